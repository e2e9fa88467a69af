"""The coordinator as its state store grows: latency, restart, memory and pruning at 0, 100,000
and 1,000,000 stored events (Kafka + PostgreSQL; bench/latency.py's spec and helpers).

For each size (--sizes), a fresh PostgreSQL database is pre-filled by COPY with that many events
and their runs, shaped as the coordinator writes them (an input event, its run succeeded with
one attempt, its output event, the current versions), sixty days old and ten versions per
dataset partition (so nine in ten are superseded history that retention may delete), at
partitions of 2020 that the measured events (2024 on) never touch, then VACUUM ANALYZEd (as a
store that has lived: measured without it, the first reads of every fresh page and autovacuum's
first pass over them put p99 at 1,000,000 stored events at 1.5-4 s). Then, on that store:

- p99_ms: event-to-launch at 1,000 events/s (bench/latency.py's offered load, --repeat runs on
  fresh topics, the run with the median p99; runs_p99_ms lists them all).
- restart_s: a coordinator process serving the store is SIGKILLed, an event is published while
  none runs, a new process is started; the time from starting it to the launch of that event's
  run (interpreter start, imports, store and group join, recovery included). Median of
  --restarts.
- rss_mb: the serving process's resident memory after --more events past the restart;
  rss_growth_mb_per_100k from after a warm-up of one chunk (50,000 events) to the end, the events
  published in chunks of that same size throughout (malloc's level follows the largest burst
  served, so a warm reading after a smaller burst would count the burst size as growth;
  bench/memory.py follows the curve itself).
- prune_s and the store's size (every coord_ table with its indexes; before: with the events of
  the loads above too) before and after a whole retention pass (coordinator/retention.py, 30
  days): after the pass with a plain VACUUM (the space PostgreSQL reuses) and after VACUUM FULL
  (what is left).

bytes_per_event: the coord_ tables' size (with their indexes) per event after the coordinator
itself drained 20,000 events (--events) of the bench's spec (one run each) on an empty store,
after a plain VACUUM (as left: the figure reported as bytes_per_event); beside it the marginal
cost (the growth per event while it drains as many more, VACUUM after each) and the size after
VACUUM FULL (compact), with each table's and index's share. `--only bytes` measures only these
(about a minute).

The launcher is the stub (launches succeed at once), as in bench/latency.py; in the serving
processes a counting variant that keeps nothing per run, so their memory is the coordinator's.

    python bench/scale.py [--sizes 0,100000,1000000] [--more 200000] [--repeat 3] [--restarts 3]
                          [--only bytes] [--events 20000]
Prints figures as it goes and, as its last line, one JSON object:
{"stored": {"0": {"p99_ms", "restart_s", "rss_mb", ...}, ...}, "bytes_per_event": N, "prune_s": N}
(prune_s: of the largest size).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency as L  # noqa: E402 — bench/latency.py, beside this file
from pydantic import SecretStr  # noqa: E402

from coordinator.bus.factory import open_bus  # noqa: E402
from coordinator.engine import Coordinator  # noqa: E402
from coordinator.events import CompletionEvent  # noqa: E402
from coordinator.launchers.stub import StubLauncher  # noqa: E402
from coordinator.outcome import output_event_id  # noqa: E402
from coordinator.publish import Publisher  # noqa: E402
from coordinator.readiness import Version, input_key  # noqa: E402
from coordinator.retention import DAY_S, Pruner  # noqa: E402
from coordinator.settings import Settings  # noqa: E402
from coordinator.store.rows import dumps, run_id_for, version_dict  # noqa: E402
from coordinator.store.store import StateStore  # noqa: E402

PREFILL_DAY0 = date(2020, 1, 1)
VERSIONS = 10  # of each prefilled dataset partition
AGE_S = 60 * DAY_S  # how old the prefilled history is
WAITING = date(2030, 1, 1).isoformat()  # the partition of the event published while none serves
WARM = 50_000  # events before the first RSS reading: one chunk, the size of every later one


# ---------------------------------------------------------------------- the pre-fill
def _rows(k: int, size: int, now: float) -> tuple[tuple, tuple, tuple, str, str, str, float]:
    """Prefilled event k: its input event, run (with its attempt) and output event rows (COPY tuples)."""
    jobs = L.JOBS
    days = max(1, size // (jobs * VERSIONS))
    i, day = k % jobs, (k // jobs) % days
    partition = (PREFILL_DAY0 + timedelta(days=day)).isoformat()
    at = now - AGE_S + k * 0.001
    event_id = hashlib.md5(b"prefill%d" % k).hexdigest()
    body = '{"producer":"bench"}'  # the rest is in the columns (store/rows.py: event_body)
    key = input_key([event_id])
    run_id = run_id_for(f"job_{i}", partition, key, 0)
    inputs = dumps([version_dict(Version(event_id, f"src.{i}", partition, at, None, None))])
    handle = f'{{"kind":"command","data":{{"run_id":"{run_id}","attempt":1}}}}'
    out_id = output_event_id(run_id, 1, f"out.{i}", "succeeded")
    out_body = f'{{"producer":"coordinator","producer_run_id":"{run_id}","attributes":{{"job":"job_{i}"}}}}'
    return (
        (event_id, f"src.{i}", partition, "succeeded", at, at, body),
        # the input key '' and the attempt on the run's row, as the store writes them (store/runs.py)
        (run_id, f"job_{i}", partition, "", 0, "succeeded", "default", 1, 1, 1, inputs, handle, None, 0.0,
         "coordinator#1", None, at, at, at + 0.5, None, None),
        (out_id, f"out.{i}", partition, "succeeded", at + 0.5, at + 0.5, out_body),
        partition, event_id, out_id, at,
    )  # fmt: skip


def prefill(url: str, size: int, now: float, batch: int = 20_000) -> float:
    """`size` events and their runs into the (migrated, empty) store at `url`, by COPY; seconds."""
    import psycopg

    started = time.perf_counter()
    current: dict[tuple[str, str], tuple[str, float]] = {}
    with psycopg.connect(url) as conn:
        for first in range(0, size, batch):
            rows = [_rows(k, size, now) for k in range(first, min(size, first + batch))]
            with conn.transaction(), conn.cursor() as cur:
                L._copy(cur, "coord_events", (r[0] for r in rows))
                L._copy(cur, "coord_events", (r[2] for r in rows))
                L._copy(cur, "coord_runs", (r[1] for r in rows))
            for r in rows:
                i = r[0][1][4:]
                current[(f"src.{i}", r[3])] = (r[4], r[6])
                current[(f"out.{i}", r[3])] = (r[5], r[6] + 0.5)
        with conn.transaction(), conn.cursor() as cur:
            L._copy(
                cur,
                "coord_partitions (dataset, partition_key, event_id, produced_at, updated_at)",
                ((d, p, e, at, at) for (d, p), (e, at) in current.items()),
            )
        conn.commit()
    # as a store that has lived: hint bits set, visibility map and statistics up to date (else the
    # first reads of every page, and autovacuum's first pass, would be measured with the loads)
    vacuum(url, analyze=True)
    return time.perf_counter() - started


def store_bytes(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return int(
            conn.execute(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'coord%'"
            ).fetchone()[0]
        )


def vacuum(url: str, full: bool = False, analyze: bool = False) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM" + (" FULL" if full else "") + (" ANALYZE" if analyze else ""))


def driver_url(settings: Settings) -> str:
    return settings.resolved_state_url().replace("postgresql+psycopg://", "postgresql://", 1)


class Prefilled(L.Backend):
    """bench/latency.py's Kafka + PostgreSQL backend, every fresh topic over one prefilled store."""

    def __init__(self, tmp: Path, state_url: str) -> None:
        super().__init__("kafka_postgres", tmp)
        self.state_url = state_url

    def fresh(self, partitions: int = 3) -> Settings:
        # no pruning in the loop: its passes are measured apart (prune below)
        update = {"state_url": SecretStr(self.state_url), "retention_every_s": 0.0}
        return super().fresh(partitions).model_copy(update=update)


# ---------------------------------------------------------------------- a serving process
class Counting(StubLauncher):
    """The stub, keeping nothing per run: a count, and when the waiting partition's run started."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, kind="command")
        self.launched, self.waiting_at = 0, None

    def start(self, ctx):  # noqa: ANN001, ANN201
        handle = super().start(ctx)
        self.runs.clear()
        self.launched += 1
        if ctx.partition == WAITING and self.waiting_at is None:
            self.waiting_at = time.time()
        return handle

    def _end(self, run, result):  # noqa: ANN001, ANN201
        self._live.pop((run.run_id, run.attempt), None)
        return super()._end(run, result)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _serving(settings_json: str, state_url: str, status: str) -> None:
    """In a process of its own: a coordinator on the bench's spec until SIGTERM; every 0.2 s its
    launch count (and the waiting partition's launch time) to the file `status`."""
    # the URL apart: a dump masks it (a secret)
    settings = Settings.model_validate_json(settings_json).model_copy(
        update={"state_url": SecretStr(state_url)}
    )
    launcher = Counting(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def report() -> None:
        path, tmp = Path(status), Path(status + ".tmp")
        while not stop.wait(0.2):
            tmp.write_text(json.dumps({"launched": launcher.launched, "waiting_at": launcher.waiting_at}))
            tmp.replace(path)

    threading.Thread(target=report, daemon=True).start()
    with Coordinator(L.build_spec(), settings, launchers={"command": launcher}, freeze_gc=True) as coord:
        coord.run(stop=stop.is_set)


class Serving:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.status = tmp / f"status-{time.monotonic_ns()}.json"
        self.proc = mp.get_context("spawn").Process(
            target=_serving,
            args=(settings.model_dump_json(), settings.resolved_state_url(), str(self.status)),
        )
        self.started = time.time()
        self.proc.start()

    def read(self) -> dict:
        try:
            return json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {"launched": 0, "waiting_at": None}

    def until(self, test, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.read()
            if test(found):
                return found
            if not self.proc.is_alive():
                raise RuntimeError("the serving coordinator ended")
            time.sleep(0.02)
        raise RuntimeError(f"timed out waiting on the serving coordinator: {self.read()}")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(120)
        if self.proc.is_alive():
            self.kill()


def publish(settings: Settings, events: list[CompletionEvent]) -> None:
    with Publisher(open_bus(settings), settings) as publisher:
        for first in range(0, len(events), 5000):
            publisher.publish_many(events[first : first + 5000])
        publisher.flush()


def more_event(n: int) -> CompletionEvent:
    """The events after the restart: 2025 on, one run each."""
    return CompletionEvent(
        dataset=f"src.{n % L.JOBS}",
        partition=(date(2025, 1, 1) + timedelta(days=n // L.JOBS)).isoformat(),
        producer="bench",
    )


def restart_and_memory(backend: Prefilled, restarts: int, more: int) -> dict[str, float]:
    settings = backend.fresh()
    publish(settings, [L.event(L.WARM_UP)])
    times = []
    serving = Serving(settings, backend.tmp)
    serving.until(lambda s: s["launched"] >= 1, 120)
    for n in range(restarts):
        serving.kill()
        waiting = CompletionEvent(dataset=f"src.{n}", partition=WAITING, producer="bench")
        publish(settings, [waiting])
        serving = Serving(settings, backend.tmp)
        found = serving.until(lambda s: s["waiting_at"] is not None, 120)
        times.append(found["waiting_at"] - serving.started)
        print(f"    restart {n + 1}: {times[-1]:.2f} s to the waiting event's launch", flush=True)
    try:
        base = serving.read()["launched"]
        publish(settings, [more_event(n) for n in range(WARM)])
        serving.until(lambda s: s["launched"] >= base + WARM, 600)
        warm_rss = rss_mb(serving.proc.pid)
        for first in range(WARM, more, WARM):
            publish(settings, [more_event(n) for n in range(first, min(more, first + WARM))])
            serving.until(lambda s, m=min(more, first + WARM): s["launched"] >= base + m, 900)
        end_rss = rss_mb(serving.proc.pid)
    finally:
        serving.stop()
    growth = (end_rss - warm_rss) / max(1, more - WARM) * 100_000
    print(f"    RSS {warm_rss:.0f} MB after {WARM:,} events, {end_rss:.0f} MB after {more:,}", flush=True)
    return {
        "restart_s": round(statistics.median(times), 2),
        "restarts_s": [round(t, 2) for t in times],
        "rss_mb": round(end_rss, 1),
        "rss_warm_mb": round(warm_rss, 1),
        "rss_growth_mb_per_100k": round(growth, 2),
    }


# ---------------------------------------------------------------------- pruning, bytes per event
def prune(settings: Settings, spec) -> dict[str, float]:  # noqa: ANN001
    url = driver_url(settings)
    before = store_bytes(url)
    with StateStore(settings.resolved_state_url()) as store:
        stats = Pruner(store, spec, settings).run_pass()
    vacuum(url)
    after = store_bytes(url)
    vacuum(url, full=True)
    compact = store_bytes(url)
    out = {
        "prune_s": round(stats.seconds, 1),
        "pruned": {"runs": stats.runs, "attempts": stats.attempts, "events": stats.events},
        "prune_longest_slice_s": round(stats.longest_slice_s, 3),
        "store_mb_before": round(before / 2**20, 1),
        "store_mb_after_vacuum": round(after / 2**20, 1),
        "store_mb_after_vacuum_full": round(compact / 2**20, 1),
    }
    print(f"    prune: {out}", flush=True)
    return out


def relation_sizes(url: str) -> dict[str, int]:
    """Bytes of every coord_ table, of each of their indexes and TOAST tables (with its index,
    named for the table it holds values of), by name: together, what `store_bytes` sums."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "WITH t AS (SELECT c.oid, c.relname, c.reltoastrelid FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'coord%')"
            " SELECT relname, pg_relation_size(oid) FROM t"
            " UNION ALL SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid)"
            " FROM t JOIN pg_index i ON i.indrelid = t.oid"
            " UNION ALL SELECT t.relname || ' (toast)', pg_total_relation_size(t.reltoastrelid)"
            " FROM t WHERE t.reltoastrelid <> 0"
        ).fetchall()
    return {name: int(size) for name, size in rows}


def bytes_per_event(backend: L.Backend, spec, events: int = 20_000) -> dict[str, object]:  # noqa: ANN001
    """What the coordinator leaves in the store per event: it drains `events` of the bench's
    spec on an empty store (one run each), then as many more at later partitions. Three
    figures: as left after the first drain (plain VACUUM: what PostgreSQL reuses, the bloat of
    updates included), the marginal cost of the second drain (its growth per event: what the
    store grows by once it has lived), and after VACUUM FULL (compact, over both drains)."""
    settings = backend.fresh()
    url = driver_url(settings)
    coord, launcher, stop, thread = L.serve(spec, settings)
    try:
        sizes = []
        for first in (0, events):
            L.publish_backlog(settings, events, make=lambda n, first=first: L.event(first + n))
            L.wait_for(launcher, first + events, timeout_s=600)
            time.sleep(2.0)  # the last results and outbox entries settle
            vacuum(url)
            sizes.append(relation_sizes(url))
    finally:
        stop.set()
        thread.join(60)
        coord.close()
    vacuum(url, full=True)
    sizes.append(relation_sizes(url))
    left, grown, compact = sum(sizes[0].values()), sum(sizes[1].values()), sum(sizes[2].values())
    out: dict[str, object] = {
        "as_left": round(left / events),
        "marginal": round((grown - left) / events),
        "compact": round(compact / (2 * events)),
    }
    print(
        f"  bytes per event: {out['as_left']:,} as left (after VACUUM, {events:,} events),"
        f" {out['marginal']:,} marginal (events {events:,} to {2 * events:,}),"
        f" {out['compact']:,} after VACUUM FULL",
        flush=True,
    )
    database = url.rsplit("/", 1)[-1]
    print(
        f"    {'relation':<40} {'as left':>9} {'marginal':>9} {'compact':>9}  (bytes per event, {database})"
    )
    for name in sorted(sizes[0], key=lambda n: -sizes[0][n]):
        a, c = sizes[0][name] / events, sizes[2][name] / events / 2
        m = (sizes[1][name] - sizes[0][name]) / events
        if max(abs(a), abs(m), c) >= 0.5:
            print(f"    {name:<40} {a:>9.0f} {m:>9.0f} {c:>9.0f}")
    out["relations_as_left"] = {n: round(b / events) for n, b in sizes[0].items() if b}
    return out


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="0,100000,1000000", help="stored events to pre-fill, comma-separated"
    )
    parser.add_argument("--more", type=int, default=200_000, help="events after the restart (the RSS figure)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the 1,000 events/s load")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each offered load")
    parser.add_argument(
        "--only", choices=("all", "bytes"), default="all", help="bytes: only the bytes per event (a minute)"
    )
    parser.add_argument("--events", type=int, default=20_000, help="events of each bytes-per-event drain")
    args = parser.parse_args()
    if not (os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("COORD_TEST_POSTGRES_URL")):
        sys.exit("set KAFKA_BOOTSTRAP_SERVERS and COORD_TEST_POSTGRES_URL (Kafka + PostgreSQL)")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    spec = L.build_spec()
    result: dict[str, object] = {"stored": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plain = L.Backend("kafka_postgres", tmp)
        result["bytes_per_event_detail"] = bytes_per_event(plain, spec, args.events)
        result["bytes_per_event"] = result["bytes_per_event_detail"]["as_left"]
        if args.only == "bytes":
            print(json.dumps(result))
            return
        print("  warm-up (not counted):", flush=True)
        L.offered_load(plain, spec, 1000, 2.0)
        for size in sizes:
            settings = plain.fresh()
            with StateStore(settings.resolved_state_url()) as store:
                store.engine  # noqa: B018 — opening it creates the tables
            url = driver_url(settings)
            took = prefill(url, size, time.time()) if size else 0.0
            print(
                f"{size:,} stored events: pre-filled in {took:.0f} s, {store_bytes(url) / 2**20:.0f} MB",
                flush=True,
            )
            backend = Prefilled(tmp, settings.resolved_state_url())
            figures: dict[str, object] = {"prefill_s": round(took, 1)}
            figures.update(
                L.median_run([L.offered_load(backend, spec, 1000, args.seconds) for _ in range(args.repeat)])
            )
            figures.update(restart_and_memory(backend, args.restarts, args.more))
            figures.update(prune(settings, spec))
            result["stored"][str(size)] = figures
            result["prune_s"] = figures["prune_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
