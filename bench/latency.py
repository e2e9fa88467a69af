"""Event-to-launch latency and sustained throughput of the coordinator, 1,000 jobs in the spec.

Two backends: kafka_postgres (the broker at $KAFKA_BOOTSTRAP_SERVERS and a fresh database on
$COORD_TEST_POSTGRES_URL — both 127.0.0.1) and local_sqlite (the embedded bus and SQLite).
The spec has 1,000 daily jobs job_i: src.i → out.i, so every event makes one run ready. Its
pool is 10,000: the launcher below ends at once, so a run holds its pool slot only until the
next loop turn records its end, and a smaller cap would measure the cap, not the coordinator.

- Offered loads 100, 1,000 and 10,000 events/s: a separate, already connected producer
  process publishes events at that pace (produced_at is set as each is published) while the
  coordinator serves in this process. Latency = when the launcher was asked to start the run −
  the event's produced_at; p50/p99/max over every event. The 100 and 1,000 events/s loads run
  --repeat times (3), each on a fresh topic and store: the figures are those of the run with the
  median p99, and `runs_p99_ms` lists every run's (the machine is shared; one run's tail is noise).
  An untimed run at 1,000 events/s goes first (a broker just started is still compiling).
- Sustained: a backlog of --backlog events is published first; the coordinator drains it;
  events/s = launches / (last launch − first launch), and `with_start_up_events_per_s` counts
  from the coordinator's start instead (consumer group join, store open). Every one of those
  events launches a run; `ingest_only_events_per_s` is the same backlog of events no job
  consumes (recorded and evaluated, nothing launched).
- Baselines: `baseline_postgres_writes_events_per_s` (kafka_postgres) is PostgreSQL alone
  writing, by COPY, the rows one event and its run leave in the store, measured in the same
  run on the same machine; `baseline_sqlite_writes_events_per_s` (local_sqlite) is SQLite alone
  writing the same rows by executemany; `sustained_to_baseline` is the coordinator's share of
  that ceiling.
- Scale-out (`kafka_postgres_xN`, --instances N, default 2): the 100 and 1,000 events/s loads
  and the sustained drain served by N coordinator processes in one consumer group over one
  PostgreSQL (topic of 2N partitions).

The launcher is the stub (coordinator/launchers/stub.py), which records the launch and reports
success at once, so the figures are the coordinator's own cost (bus, state store, readiness,
claims, outbox, its own completion events back on the bus) — not process start-up, which the
`command` kind adds and which is printed separately (median of sequential `true` runs). The
test PostgreSQL that scripts/services starts runs with fsync off; a durable server adds one WAL
flush per transaction (two per loop turn: its batch's events, then its results).

    python bench/latency.py [--seconds 5] [--backlog 20000] [--only local_sqlite] [--instances 2] [--repeat 3]
Prints figures as it goes and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from coordinator.bus.factory import open_bus
from coordinator.engine import Coordinator
from coordinator.events import CompletionEvent
from coordinator.launchers.base import RunContext
from coordinator.launchers.command import CommandLauncher
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


def offered_load(backend: Backend, spec: PipelineSpec, rate: int, seconds: float) -> dict[str, float]:
    settings = backend.fresh()
    coord, launcher, stop, thread = serve(spec, settings)
    warm_up(settings, launcher)
    total = int(rate * seconds)
    producer = mp.get_context("spawn").Process(
        target=produce, args=(settings.model_dump_json(), rate, seconds, 0)
    )
    producer.start()
    producer.join()
    complete = wait_for(launcher, total, timeout_s=120 + seconds)
    stop.set()
    thread.join(60)
    sent = produced_at(coord.store)
    coord.close()
    lat = sorted((at - sent[eid]) * 1000 for eid, at in launch_times(launcher).values() if eid in sent)
    out = latency_figures(lat, total, complete)
    print(f"  {backend.name} {rate:>6}/s: {out}", flush=True)
    return out


def median_run(runs: list[dict[str, float]]) -> dict[str, object]:
    """Of repeated runs of one offered load, the run with the median p99, with every run's p99
    beside it: one run's tail on a shared machine says as much about its neighbours."""
    ordered = sorted(runs, key=lambda r: r["p99_ms"])
    out: dict[str, object] = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        out["runs_p99_ms"] = [r["p99_ms"] for r in runs]
    return out


def latency_figures(lat: list[float], total: int, complete: bool) -> dict[str, float]:
    """p50/p99/max of sorted event-to-launch latencies (ms), with the counts behind them."""
    out: dict[str, float] = {
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 1),
        "max_ms": round(lat[-1], 1),
        "events": total,
        "launched": len(lat),
    }
    if not complete:
        out["incomplete"] = True
    return out


def sustained(backend: Backend, spec: PipelineSpec, backlog: int) -> float:
    settings = backend.fresh()
    publish_backlog(settings, backlog)
    started = time.time()
    coord, launcher, stop, thread = serve(spec, settings)
    complete = wait_for(launcher, backlog, timeout_s=600)
    times = sorted(at for _, at in launch_times(launcher).values())
    stop.set()
    thread.join(60)
    coord.close()
    rate = (len(times) - 1) / (times[-1] - times[0])
    cold = len(times) / (times[-1] - started)
    print(
        f"  {backend.name} sustained: {rate:,.0f} events/s from the first launch to the last, over a"
        f" backlog of {backlog} ({cold:,.0f} events/s counting the coordinator's start-up)"
        + ("" if complete else " (incomplete)"),
        flush=True,
    )
    return round(rate), round(cold)


_RUN_COLUMNS = (
    "run_id, job, partition_key, input_key, generation, state, pool, attempt, max_attempts, budget,"
    " inputs, not_before, created_at"
)


def _copy(cur, table_columns: str, rows) -> None:
    with cur.copy(f"COPY {table_columns} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _floor_batch(cur, ids: list[str], body: str) -> None:
    """The rows one batch of events and their runs leave in the store (see postgres_floor)."""
    runs = ["r" + i for i in ids]
    outs = ["out" + i for i in ids]
    day = "2024-01-01"
    for prefix in ("in", "out"):
        _copy(
            cur,
            "coord_events",
            ((prefix + i, f"{prefix}.{i}", day, "succeeded", 1.0, 1.0, body) for i in ids),
        )
        _copy(
            cur,
            "coord_partitions (dataset, partition_key, event_id, produced_at, updated_at)",
            ((f"{prefix}.{i}", day, prefix + i, 1.0, 1.0) for i in ids),
        )
    _copy(
        cur,
        f"coord_runs ({_RUN_COLUMNS})",
        ((r, r, day, r, 0, "ready", "p", 0, 1, 1, "[]", 0.0, 1.0) for r in runs),
    )
    cur.execute(
        "UPDATE coord_runs SET state = 'starting', attempt = 1, owner = 'b', started_at = 1"
        " WHERE run_id = ANY(%s)",
        (runs,),
    )
    _copy(
        cur, "coord_attempts (run_id, attempt, state, started_at)", ((r, 1, "succeeded", 1.0) for r in runs)
    )
    cur.execute("UPDATE coord_runs SET state = 'succeeded', finished_at = 2 WHERE run_id = ANY(%s)", (runs,))
    _copy(cur, "coord_outbox (event_id, body, created_at)", ((o, body, 1.0) for o in outs))
    cur.execute("UPDATE coord_outbox SET sent_at = 2 WHERE event_id = ANY(%s)", (outs,))


def postgres_floor(backend: Backend, events: int, batch: int = 2000) -> float:
    """Baseline: PostgreSQL alone writing what the store keeps for one event and its run, by COPY.

    Per event, as the engine does it: the input event, its partition version, the run (ready),
    the claim (an UPDATE), the attempt, the run's end (an UPDATE), the output event, its version,
    its outbox entry, the outbox entry marked sent — in transactions of `batch` events, straight
    from Python tuples (no decoding, readiness or bus). Events/s here is a ceiling for any loop
    that keeps those records in this database on this machine.
    """
    import psycopg

    settings = backend.fresh()
    with StateStore(settings.resolved_state_url()) as store:
        store.engine  # noqa: B018 — opening it creates the tables (migrations)
    body = event(0).model_dump_json()
    url = settings.resolved_state_url()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        started = time.perf_counter()
        for first in range(0, events, batch):
            with conn.transaction(), conn.cursor() as cur:
                _floor_batch(cur, [str(n) for n in range(first, min(events, first + batch))], body)
        rate = events / (time.perf_counter() - started)
    print(f"  {backend.name} baseline, PostgreSQL writes alone: {rate:,.0f} events/s", flush=True)
    return round(rate)


def sqlite_floor(backend: Backend, events: int, batch: int = 2000) -> float:
    """Baseline: SQLite alone writing the same records as postgres_floor, with the store's own
    settings (WAL, synchronous=NORMAL), by executemany from Python tuples in transactions of
    `batch` events — a ceiling for any loop that keeps those records in SQLite on this machine."""
    import sqlite3

    settings = backend.fresh()
    url = settings.resolved_state_url()
    with StateStore(url) as store:
        store.engine  # noqa: B018 — opening it creates the tables (migrations)
    body = event(0).model_dump_json()
    conn = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    day = "2024-01-01"
    try:
        started = time.perf_counter()
        for first in range(0, events, batch):
            ids = [str(n) for n in range(first, min(events, first + batch))]
            runs, outs = [("r" + i,) for i in ids], [("out" + i,) for i in ids]
            conn.execute("BEGIN IMMEDIATE")
            for prefix in ("in", "out"):
                conn.executemany(
                    "INSERT INTO coord_events VALUES (?, ?, ?, 'succeeded', 1.0, 1.0, ?)",
                    [(prefix + i, f"{prefix}.{i}", day, body) for i in ids],
                )
                conn.executemany(
                    "INSERT INTO coord_partitions (dataset, partition_key, event_id, produced_at, updated_at)"
                    " VALUES (?, ?, ?, 1.0, 1.0)",
                    [(f"{prefix}.{i}", day, prefix + i) for i in ids],
                )
            conn.executemany(
                f"INSERT INTO coord_runs ({_RUN_COLUMNS})"
                " VALUES (?, ?, ?, ?, 0, 'ready', 'p', 0, 1, 1, '[]', 0.0, 1.0)",
                [(r, r, day, r) for (r,) in runs],
            )
            conn.executemany(
                "UPDATE coord_runs SET state = 'starting', attempt = 1, owner = 'b', started_at = 1"
                " WHERE run_id = ?",
                runs,
            )
            conn.executemany(
                "INSERT INTO coord_attempts (run_id, attempt, state, started_at)"
                " VALUES (?, 1, 'succeeded', 1.0)",
                runs,
            )
            conn.executemany(
                "UPDATE coord_runs SET state = 'succeeded', finished_at = 2 WHERE run_id = ?", runs
            )
            conn.executemany(
                "INSERT INTO coord_outbox (event_id, body, created_at) VALUES (?, ?, 1.0)",
                [(o, body) for (o,) in outs],
            )
            conn.executemany("DELETE FROM coord_outbox WHERE event_id = ?", outs)
            conn.execute("COMMIT")
        rate = events / (time.perf_counter() - started)
    finally:
        conn.close()
    print(f"  {backend.name} baseline, SQLite writes alone: {rate:,.0f} events/s", flush=True)
    return round(rate)


def ingest_only(backend: Backend, spec: PipelineSpec, backlog: int) -> float:
    """Events/s for completions no job consumes: bus, decode, dedupe, record, readiness — no runs."""
    settings = backend.fresh()
    publish_backlog(settings, backlog, other_event)
    with Coordinator(spec, settings, launchers={"command": instant(settings)}, freeze_gc=True) as coord:
        started = time.monotonic()
        stats = coord.run(max_events=backlog, timeout_s=600)
        rate = stats.events / (time.monotonic() - started)
    print(f"  {backend.name} ingest only: {rate:,.0f} events/s over {stats.events} events", flush=True)
    return round(rate)


def command_spawn_ms(tmp: Path, n: int = 20) -> float:
    launcher = CommandLauncher(Settings(home=tmp))
    times = []
    for i in range(n):
        ctx = RunContext(
            run_id=f"s{i}",
            job="spawn",
            partition=None,
            attempt=1,
            settings={"command": ["true"]},
            inputs=(),
            outputs=(),
            workdir=tmp / "spawn" / str(i),
        )
        t0 = time.perf_counter()
        launcher.wait(launcher.start(ctx), ctx)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def _instance(settings_json: str, name: str, stop, out: str) -> None:
    """In a process of its own: one coordinator instance until `stop` is set; its launches to `out`."""
    settings = Settings.model_validate_json(settings_json).model_copy(update={"instance_name": name})
    launcher = instant(settings)
    with Coordinator(build_spec(), settings, launchers={"command": launcher}, freeze_gc=True) as coord:
        coord.run(stop=stop.is_set)
    Path(out).write_text(json.dumps(launch_times(launcher)))


class Instances:
    """`n` coordinator processes in one consumer group over one PostgreSQL — the way the
    coordinator scales out. Launches are counted from the store (runs that succeeded), and each
    process hands its launch times over when stopped."""

    def __init__(self, settings: Settings, n: int, tmp: Path) -> None:
        ctx = mp.get_context("spawn")
        self.settings, self.stop = settings, ctx.Event()
        self.outs = [tmp / f"launches-{uuid.uuid4().hex[:8]}.json" for _ in range(n)]
        self.procs = [
            ctx.Process(
                target=_instance, args=(settings.model_dump_json(), f"bench-{i}", self.stop, str(out))
            )
            for i, out in enumerate(self.outs)
        ]
        for proc in self.procs:
            proc.start()

    def done(self) -> int:
        with StateStore(self.settings.resolved_state_url()) as store, store.begin() as tx:
            return tx.count_runs(("succeeded",))

    def wait_for(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.done() < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.done() >= n

    def finish(self) -> dict[str, tuple[str, float]]:
        self.stop.set()
        launched: dict[str, tuple[str, float]] = {}
        for proc, out in zip(self.procs, self.outs, strict=True):
            proc.join(120)
            launched.update({k: tuple(v) for k, v in json.loads(out.read_text()).items()})
        return launched


def scaled_out(backend: Backend, rate: int | None, seconds: float, backlog: int, n: int) -> dict[str, float]:
    """The offered load `rate` (or, with rate None, the sustained drain of `backlog` events) served
    by `n` coordinator processes; the same figures as offered_load / sustained."""
    settings = backend.fresh(partitions=2 * n)
    if rate is None:
        publish_backlog(settings, backlog)
        group = Instances(settings, n, backend.tmp)
        complete = group.wait_for(backlog, timeout_s=600)
        times = sorted(at for _, at in group.finish().values())
        rate_out = (len(times) - 1) / (times[-1] - times[0])
        print(
            f"  {backend.name} x{n} sustained: {rate_out:,.0f} events/s"
            + ("" if complete else " (incomplete)")
        )
        return {"sustained_events_per_s": round(rate_out)}
    group = Instances(settings, n, backend.tmp)
    with Publisher(open_bus(settings), settings) as publisher:
        publisher.publish(event(WARM_UP))
        publisher.flush()
    if not group.wait_for(1, timeout_s=60):
        raise RuntimeError("the coordinators did not launch the warm-up run")
    time.sleep(5.0)  # every member has joined the group and the partitions are spread
    total = int(rate * seconds)
    started = time.time()
    producer = mp.get_context("spawn").Process(
        target=produce, args=(settings.model_dump_json(), rate, seconds, 0)
    )
    producer.start()
    producer.join()
    complete = group.wait_for(total + 1, timeout_s=120 + seconds)
    launched = group.finish()
    with StateStore(settings.resolved_state_url()) as store:
        sent = produced_at(store)
    lat = sorted((at - sent[eid]) * 1000 for eid, at in launched.values() if eid in sent and at >= started)
    out = latency_figures(lat, total, complete)
    print(f"  {backend.name} x{n} {rate:>6}/s: {out}", flush=True)
    return out


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each offered load")
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--only", choices=["kafka_postgres", "local_sqlite"])
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the 100 and 1,000 events/s loads (the median p99 run)"
    )
    parser.add_argument(
        "--instances", type=int, default=2, help="coordinator processes for the scale-out figures (0: none)"
    )
    args = parser.parse_args()
    spec = build_spec()
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in backend_names(args.only):
            backend = Backend(name, tmp)
            print(f"{name}: {JOBS} jobs in the spec", flush=True)
            figures: dict[str, object] = {}
            # untimed: a broker just started (JIT) and cold caches would be measured otherwise
            print(f"  {name} warm-up (not counted):", flush=True)
            offered_load(backend, spec, 1000, 2.0)
            for rate in LOADS:
                seconds = args.seconds if rate < 10000 else max(1.0, args.seconds / 2)
                repeat = args.repeat if rate < 10000 else 1
                figures[str(rate)] = median_run(
                    [offered_load(backend, spec, rate, seconds) for _ in range(repeat)]
                )
            figures["sustained_events_per_s"], figures["with_start_up_events_per_s"] = sustained(
                backend, spec, args.backlog
            )
            figures["ingest_only_events_per_s"] = ingest_only(backend, spec, args.backlog)
            if name == "kafka_postgres":
                floor = postgres_floor(backend, args.backlog)
                figures["baseline_postgres_writes_events_per_s"] = floor
            else:
                floor = sqlite_floor(backend, args.backlog)
                figures["baseline_sqlite_writes_events_per_s"] = floor
            figures["sustained_to_baseline"] = round(figures["sustained_events_per_s"] / floor, 3)
            result[name] = figures
            if name == "kafka_postgres" and args.instances > 1:
                n = args.instances
                print(f"{name}: {n} coordinator processes in one consumer group", flush=True)
                scaled = {str(rate): scaled_out(backend, rate, args.seconds, 0, n) for rate in (100, 1000)}
                scaled.update(scaled_out(backend, None, 0, args.backlog, n))
                result[f"{name}_x{n}"] = scaled
        spawn = command_spawn_ms(tmp)
        print(f"command kind: a `true` process is started and reaped in {spawn} ms (median)")
    result["command_spawn_ms_p50"] = spawn
    print(json.dumps(result))


if __name__ == "__main__":
    main()
