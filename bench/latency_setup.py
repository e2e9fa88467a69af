"""bench/latency.py's setting: the 1,000-job spec, its events, the two backends (fresh topics and
stores), a producer process publishing at a pace, and a coordinator serving in a thread with the
stub launcher. bench/scale.py, bench/launch.py, bench/leases.py and bench/memory.py build on it."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from coordinator.bus.factory import open_bus
from coordinator.engine import Coordinator
from coordinator.events import CompletionEvent
from coordinator.launchers.stub import StubLauncher
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.spec.models import DatasetSpec, JobSpec, PipelineSpec
from coordinator.store.store import StateStore

JOBS = 1000
LOADS = (100, 1000, 10000)
DAY0 = date(2024, 1, 1)
WARM_UP = 10_000_000  # an event number no load reaches


def instant(settings: Settings) -> StubLauncher:
    """Serves the spec's command jobs: every run succeeds at once (the coordinator's cost only)."""
    return StubLauncher(settings, kind="command")


def launch_times(launcher: StubLauncher) -> dict[str, tuple[str, float]]:
    """When each run was launched, by run id: (the event that made it ready, the time)."""
    out: dict[str, tuple[str, float]] = {}
    for run in list(launcher.runs):
        out.setdefault(run.run_id, (run.inputs[0].event_id, run.started_at))
    return out


def build_spec(jobs: int = JOBS) -> PipelineSpec:
    return PipelineSpec(
        datasets={f"src.{i}": DatasetSpec(partitioning="daily") for i in range(jobs)},
        jobs={
            f"job_{i}": JobSpec(
                kind="command", inputs=[f"src.{i}"], outputs=[f"out.{i}"], settings={"command": ["true"]}
            )
            for i in range(jobs)
        },
        pools={"default": 10000},
        # the ingest-only load's datasets (and the producer's first event) are named by no job:
        # recorded and evaluated like any event, as on a bus shared with other pipelines
        accept_unknown_datasets=True,
    ).checked()


def event(n: int) -> CompletionEvent:
    return CompletionEvent(
        dataset=f"src.{n % JOBS}",
        partition=(DAY0 + timedelta(days=n // JOBS)).isoformat(),
        producer="bench",
        produced_at=datetime.now(UTC),
    )


def produce(settings_json: str, rate: int, seconds: float, first: int) -> None:
    """In a separate process: publish rate × seconds events at a steady pace, in 10 ms ticks.

    The Kafka producer sends in the background (linger 5 ms), so it is flushed only at the end;
    the embedded bus writes on flush, so it is flushed every tick.
    """
    settings = Settings.model_validate_json(settings_json)
    total = int(rate * seconds)
    with Publisher(open_bus(settings), settings) as publisher:
        # a long-lived producer has its connection and (Kafka) idempotence id already: one
        # event no job consumes goes first, so the measured events do not wait for them
        publisher.publish(CompletionEvent(dataset="bench.producer_ready"))
        publisher.flush()
        started, sent = time.monotonic(), 0
        while sent < total:
            due = min(total, int(rate * (time.monotonic() - started)) + 1)
            if due > sent:
                publisher.publish_many(event(first + n) for n in range(sent, due))
                if settings.bus == "local":
                    publisher.flush()
                sent = due
            time.sleep(0.01)
        publisher.flush()


class Backend:
    """A backend's fresh topics and stores; on Kafka + PostgreSQL they are deleted again as the
    process exits (left behind, every run would add a database and three topics to the broker
    and the server the next runs measure on)."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name, self.tmp = name, tmp

    def fresh(self, partitions: int = 3) -> Settings:
        """Settings over a new, empty bus topic and state store."""
        tag = uuid.uuid4().hex[:10]
        home = self.tmp / f"{self.name}-{tag}"
        home.mkdir()
        if self.name == "local_sqlite":
            return Settings(home=home, bus="local", batch_max_events=2000)
        import psycopg
        from confluent_kafka.admin import AdminClient, NewTopic

        bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        topic = f"bench-latency-{tag}"
        admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the topic exists
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(
            30
        )
        base = os.environ["COORD_TEST_POSTGRES_URL"]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "bench_{tag}"')
        atexit.register(_discard, bootstrap, [topic, topic + "-dlq"], base, f"bench_{tag}")
        url = base.rsplit("/", 1)[0] + f"/bench_{tag}"
        return Settings(
            home=home,
            bus="kafka",
            kafka_bootstrap_servers=bootstrap,
            topic_events=topic,
            topic_dead_letter=topic + "-dlq",
            consumer_group=f"bench-{tag}",
            state_url=url.replace("postgresql://", "postgresql+psycopg://", 1),
            batch_max_events=2000,
        )


def _discard(bootstrap: str, topics: list[str], base_url: str, database: str) -> None:
    """Delete a fresh backend's topics and database (at exit; what is gone already is fine)."""
    import psycopg
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(topics, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # e.g. a dead-letter topic never made: nothing to delete
            future.result(30)
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def serve(
    spec: PipelineSpec, settings: Settings
) -> tuple[Coordinator, StubLauncher, threading.Event, threading.Thread]:
    launcher = instant(settings)
    coord = Coordinator(spec, settings, launchers={"command": launcher}, freeze_gc=True)
    stop = threading.Event()
    thread = threading.Thread(target=coord.run, kwargs={"stop": stop.is_set}, daemon=True)
    thread.start()
    return coord, launcher, stop, thread


def wait_for(launcher: StubLauncher, n: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while len(launcher.runs) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(launcher.runs) >= n


def publish_backlog(settings: Settings, backlog: int, make=event) -> None:
    """`backlog` events make(0), make(1), ... on the bus, durable, before the coordinator starts."""
    with Publisher(open_bus(settings), settings) as publisher:
        for first in range(0, backlog, 5000):
            publisher.publish_many(make(n) for n in range(first, min(backlog, first + 5000)))
        publisher.flush()


def other_event(n: int) -> CompletionEvent:
    """An event of a dataset no job consumes."""
    return CompletionEvent(
        dataset=f"other.{n % JOBS}", partition=(DAY0 + timedelta(days=n // JOBS)).isoformat()
    )


def produced_at(store: StateStore) -> dict[str, float]:
    """When each measured event was produced, as recorded by the coordinator."""
    with store.begin() as tx:
        return tx.produced_times("src.")


def warm_up(settings: Settings, launcher: StubLauncher) -> None:
    """One event through before measuring: the consumer has joined its group, caches are warm."""
    with Publisher(open_bus(settings), settings) as publisher:
        publisher.publish(event(WARM_UP))
        publisher.flush()
    if not wait_for(launcher, 1, timeout_s=60):
        raise RuntimeError("the coordinator did not launch the warm-up run")
    launcher.runs.clear()


def backend_names(only: str | None) -> list[str]:
    """The backends to measure (--only), kafka_postgres only when its services are set."""
    names = [n for n in ("kafka_postgres", "local_sqlite") if not only or n == only]
    if "kafka_postgres" in names and not (
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("COORD_TEST_POSTGRES_URL")
    ):
        print(
            "kafka_postgres skipped: set KAFKA_BOOTSTRAP_SERVERS and COORD_TEST_POSTGRES_URL",
            file=sys.stderr,
        )
        names.remove("kafka_postgres")
    return names
