"""Prometheus metrics: a hook around the engine loop, and collectors read at scrape time.

    coord_events_consumed_total{status}           new (de-duplicated) completion events recorded
    coord_events_dead_lettered_total{reason}      bus messages refused (from the dead-letter topic)
    coord_dead_letters_unwritable_total{reason}   refused messages the dead-letter topic did not take
    coord_webhooks_ignored_total{source,reason}   webhook deliveries with nothing to publish (2xx)
    coord_runs_finished_total{job,state}          runs that ended succeeded, failed or blocked
    coord_run_attempts_total{job,outcome}         attempts that ended (a retried failure counts here)
    coord_event_to_launch_seconds{job}            newest input produced → first attempt launched
    coord_run_duration_seconds{job,outcome}       one attempt, claim to end
    coord_rows_total{job,kind}                    rows a push reported: pushed, rejected
    coord_loop_turn_seconds                       one engine loop turn that did something
    coord_loop_batch_messages                     bus messages such a turn took (fuller: behind)
    coord_runs{job,state}                         runs in the store by state, now (scrape time)
    coord_bus_lag_messages                        messages the engine's group has not committed yet
    coord_outbox_pending                          events waiting to be published
    coord_dataset_freshness_seconds{dataset}      since the newest version of the dataset was produced
    coord_oldest_running_seconds{job}             age of the job's oldest starting or running run
    coord_pool_slots_used{pool}                   starting or running runs in the pool
    coord_pool_slots_total{pool}                  the pool's size in the spec (with the spec's sizes)

One `Metrics` owns its own registry (never the process-global one), so two apps or two tests
never share counters. Counters from hooks count what this process saw; the `coord_runs` gauge
is read from the store, so it is right across restarts and instances.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from coordinator.hooks import Hook

if TYPE_CHECKING:
    from coordinator.events import CompletionEvent
    from coordinator.launchers.base import RunResult
    from coordinator.settings import Settings
    from coordinator.store.deadletters import DeadLetterRow
    from coordinator.store.store import RunRow, StateStore

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600)
PUSHED_KEYS = ("inserted", "updated", "deleted")
TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (0, 1, 10, 100, 500, 1000, 2000, 5000, 10000)


class Metrics(Hook):
    """The metrics, fed by the engine's hooks and by the dead-letter watcher (`dead_lettered`)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        r = self.registry
        self.events = Counter(
            "coord_events_consumed", "New completion events recorded", ["status"], registry=r
        )
        self.dead_letters = Counter(
            "coord_events_dead_lettered", "Bus messages dead-lettered", ["reason"], registry=r
        )
        self.dead_letters_unwritable = Counter(
            "coord_dead_letters_unwritable",
            "Refused messages kept in the store, not on the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.webhooks_ignored = Counter(
            "coord_webhooks_ignored", "Webhooks with nothing to publish", ["source", "reason"], registry=r
        )
        self.runs = Counter("coord_runs_finished", "Runs that ended", ["job", "state"], registry=r)
        self.attempts = Counter("coord_run_attempts", "Attempts that ended", ["job", "outcome"], registry=r)
        self.latency = Histogram(
            "coord_event_to_launch_seconds",
            "Newest input produced to launch",
            ["job"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "coord_run_duration_seconds",
            "One attempt, claim to end",
            ["job", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.rows = Counter("coord_rows", "Rows reported by pushes", ["job", "kind"], registry=r)
        self.turns = Histogram(
            "coord_loop_turn_seconds",
            "One engine loop turn that did something",
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.batches = Histogram(
            "coord_loop_batch_messages", "Bus messages one loop turn took", buckets=BATCH_BUCKETS, registry=r
        )

    def watch(
        self,
        store: StateStore,
        lag: Callable[[], int | None] | None = None,
        pool_sizes: Mapping[str, int] | None = None,
    ) -> Metrics:
        """Also export the store's run states, the outbox backlog and (if given) the bus lag; with
        the spec's pool sizes, each pool's size and its slots in use, an idle pool's as 0 (so
        that used / total is a ratio to alert on for every pool, not only for busy ones)."""
        self.registry.register(_StoreCollector(store, lag, dict(pool_sizes or {})))
        return self

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ hooks
    def after_ingest(self, events: Sequence[CompletionEvent], created: Sequence[RunRow]) -> None:
        for e in events:
            self.events.labels(e.status.value).inc()

    def before_launch(self, run: RunRow) -> None:
        if run.attempt == 1 and run.inputs:
            newest = max(v.produced_at for v in run.inputs)
            self.latency.labels(run.job).observe(max(0.0, self.clock() - newest))

    def after_finish(self, run: RunRow, result: RunResult) -> None:
        outcome = "succeeded" if result.succeeded else "failed"
        self.attempts.labels(run.job, outcome).inc()
        if run.started_at:
            self.duration.labels(run.job, outcome).observe(max(0.0, self.clock() - run.started_at))
        if result.succeeded:
            self.runs.labels(run.job, "succeeded").inc()
        details = result.details or {}
        pushed = sum(_int(details.get(k)) for k in PUSHED_KEYS)
        if pushed:
            self.rows.labels(run.job, "pushed").inc(pushed)
        if _int(details.get("rejected")):
            self.rows.labels(run.job, "rejected").inc(_int(details.get("rejected")))

    def after_failed(self, run: RunRow, error: str | None) -> None:
        self.runs.labels(run.job, "failed").inc()

    def after_blocked(self, run: RunRow, reason: str) -> None:
        self.runs.labels(run.job, "blocked").inc()

    def after_turn(self, messages: int, seconds: float) -> None:
        self.turns.observe(seconds)
        self.batches.observe(messages)

    def dead_letter_unwritable(self, row: DeadLetterRow) -> None:
        self.dead_letters_unwritable.labels(row.reason).inc()

    # ------------------------------------------------------------------ watcher
    def dead_lettered(self, record: dict) -> None:
        self.dead_letters.labels(str(record.get("reason") or "unknown")).inc()


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


class _StoreCollector(Collector):
    def __init__(
        self, store: StateStore, lag: Callable[[], int | None] | None, pool_sizes: dict[str, int]
    ) -> None:
        self.store, self.lag, self.pool_sizes = store, lag, pool_sizes

    def collect(self) -> Iterable[GaugeMetricFamily]:
        runs = GaugeMetricFamily("coord_runs", "Runs in the store by job and state", labels=["job", "state"])
        outbox = GaugeMetricFamily("coord_outbox_pending", "Events waiting to be published")
        fresh = GaugeMetricFamily(
            "coord_dataset_freshness_seconds", "Since its newest version was produced", labels=["dataset"]
        )
        oldest = GaugeMetricFamily(
            "coord_oldest_running_seconds", "Age of the job's oldest starting or running run", labels=["job"]
        )
        used = GaugeMetricFamily("coord_pool_slots_used", "Runs starting or running", labels=["pool"])
        total = GaugeMetricFamily("coord_pool_slots_total", "The pool's size in the spec", labels=["pool"])
        for pool, size in self.pool_sizes.items():
            total.add_metric([pool], size)
        try:
            with self.store.begin() as tx:
                for job, state, n in tx.run_counts():
                    runs.add_metric([job, state], n)
                outbox.add_metric([], tx.outbox_count())
                now = time.time()
                for dataset, at in tx.newest_versions().items():
                    fresh.add_metric([dataset], max(0.0, now - at))
                for job, at in tx.oldest_active().items():
                    oldest.add_metric([job], max(0.0, now - at))
                for pool, n in {**dict.fromkeys(self.pool_sizes, 0), **tx.pool_usage()}.items():
                    used.add_metric([pool], n)
        except Exception:  # a scrape must not fail because the store hiccuped
            log.exception("metrics: reading the state store failed")
        yield from (runs, outbox, fresh, oldest, used, total)
        if self.lag is not None:
            try:
                lag = self.lag()
            except Exception:
                log.exception("metrics: measuring the bus lag failed")
                lag = None
            if lag is not None:
                yield GaugeMetricFamily(
                    "coord_bus_lag_messages",
                    "Messages not yet committed by the coordinator's consumer group",
                    value=lag,
                )


def group_lag(settings: Settings) -> Callable[[], int | None]:
    """Measures the engine's consumer group lag from outside the group (it never joins it):
    end offsets minus the group's committed offsets, over the events topic."""
    if settings.bus == "local":
        from coordinator.bus.local import LocalBus

        def local() -> int | None:
            consumer = LocalBus(settings.home / "bus.db").consumer(
                settings.consumer_group, [settings.topic_events]
            )
            try:
                return consumer.lag()
            finally:
                consumer.close()

        return local

    def kafka() -> int | None:
        from confluent_kafka import Consumer, TopicPartition

        conf = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **settings.kafka_security_config(),
            "group.id": settings.consumer_group,
            "enable.auto.commit": False,
        }
        consumer = Consumer(conf)
        try:
            meta = consumer.list_topics(settings.topic_events, timeout=5)
            parts = [
                TopicPartition(settings.topic_events, p)
                for p in meta.topics[settings.topic_events].partitions
            ]
            total = 0
            for tp in consumer.committed(parts, timeout=5):
                low, high = consumer.get_watermark_offsets(tp, timeout=5)
                total += high - (tp.offset if tp.offset >= 0 else low)
            return total
        finally:
            consumer.close()

    return kafka
