"""The engine's first transaction of a turn, alone: one new event recorded, the run it makes
ready created and claimed, the event in the outbox, its audit row — on PostgreSQL and SQLite.

What it times is what `Coordinator._transact` runs for an event POST /events handed over (the
launch path of bench/launch.py, `single`), in `_record_and_claim`'s order: `store.begin()`, the
lease's fence, the audit row, `steps.record` (publish_new, as for an event the coordinator
publishes itself: its outbox row), the claim when the ClaimSchedule says it is due (the run is
created claimed, so it rarely is), the commit. Each iteration is a new daily partition of one
input of one job; its run is then finished, untimed, so the pool always has room. The store is
fresh (a new database of the PostgreSQL that `COORD_TEST_POSTGRES_URL` names; a new SQLite file).

`--baseline DIR` (a directory holding another build's `coordinator` package, e.g. one exported
with `git archive`) times that build too, in child processes alternating with this one's, so
that a shared machine's drift falls on both alike.

    eval "$(scripts/services env)"; python bench/txn.py [--n 300] [--rounds 4] [--baseline DIR]
Prints the medians as it goes and, as its last line, one JSON object:
{"postgres": {"p50_ms", "p90_ms", "cpu_p50_ms", "n"}, "sqlite": {...}, and "baseline" the same
when given}. The CPU time (this thread's, in the transaction) moves less than the wall time when
the machine is busy with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAY0 = date(2024, 1, 1)


def child(store_kind: str, n: int, warm_up: int, gap_s: float) -> dict[str, list[float]]:
    """n timed transactions (after `warm_up` untimed ones) on a fresh store: milliseconds each,
    of wall time ("wall") and of this thread's CPU time ("cpu")."""
    from coordinator.events import CompletionEvent
    from coordinator.hooks import Hooks
    from coordinator.lease import LeaseKeeper
    from coordinator.settings import Settings
    from coordinator.spec.models import DatasetSpec, JobSpec, PipelineSpec
    from coordinator.steps import TurnSteps
    from coordinator.store import audit
    from coordinator.store.rows import Finish
    from coordinator.store.store import StateStore
    from coordinator.turn import ClaimSchedule

    tmp = Path(tempfile.mkdtemp(prefix="txn-"))
    if store_kind == "sqlite":
        url = f"sqlite:///{tmp / 'state.db'}"
    else:
        import psycopg

        base = os.environ["COORD_TEST_POSTGRES_URL"]
        name = f"bench_txn_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    spec = PipelineSpec(
        datasets={"in.single": DatasetSpec(partitioning="daily")},
        jobs={
            "single": JobSpec(
                kind="command", inputs=["in.single"], outputs=["out.single"], settings={"command": ["true"]}
            )
        },
        pools={"default": 16},
    ).checked()
    store = StateStore(url)
    keeper = LeaseKeeper(store, Settings(home=tmp), name="bench")
    keeper.acquire()
    owner = keeper.id
    claims = ClaimSchedule()
    steps = TurnSteps(spec, Hooks(), claims)
    times: dict[str, list[float]] = {"wall": [], "cpu": []}
    clock = 1_700_000_000.0
    for i in range(warm_up + n):
        clock += 1.0  # a second apart: the claim look is due, as in the launch bench
        partition = (DAY0 + timedelta(days=i)).isoformat()
        event = CompletionEvent(dataset="in.single", partition=partition, producer="bench")
        now = clock
        started, cpu = time.perf_counter(), time.thread_time()
        with store.begin() as tx:
            keeper.hold(tx)
            detail = f"event {event.event_id} (succeeded) as bench"
            if hasattr(audit, "add_many"):  # the audit rows first, as _record_and_claim writes them
                audit.add_many(tx, [audit.row("bench", "publish", None, "in.single", partition, detail, now)])
            step = steps.record(tx, [event], now, owner, publish_new=True)
            if not hasattr(audit, "add_many"):  # a build before: its order
                audit.add(tx, "bench", "publish", job="in.single", partition=partition, detail=detail, at=now)
            if claims.due(now):
                step = step + steps.claim(tx, now, owner)
            unwritten = [e for e in step.publish if e.event_id not in getattr(step, "outboxed", ())]
            if unwritten:
                tx.outbox_add(unwritten, now)
        took, took_cpu = time.perf_counter() - started, time.thread_time() - cpu
        if len(step.start) != 1:
            raise RuntimeError(f"iteration {i}: {len(step.start)} runs claimed, not 1")
        if i >= warm_up:
            times["wall"].append(took * 1000)
            times["cpu"].append(took_cpu * 1000)
        with store.begin() as tx:  # untimed: the run ends, its pool slot is free again
            run = step.start[0]
            tx.finish_many([Finish(run.run_id, run.attempt, "succeeded")], now)
            tx.outbox_mark_sent_events([event.event_id])
        time.sleep(gap_s)
    store.close()
    if store_kind != "sqlite":
        import psycopg

        with psycopg.connect(os.environ["COORD_TEST_POSTGRES_URL"], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return times


def run_child(code_root: Path, store_kind: str, n: int, warm_up: int, gap_s: float) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    args = [sys.executable, __file__, "--child", store_kind, "--n", str(n), "--warm-up", str(warm_up)]
    args += ["--gap", str(gap_s)]
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True, cwd=code_root).stdout
    return json.loads(out.strip().splitlines()[-1])


def figures(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)], 3),
        "n": len(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="timed transactions per round")
    parser.add_argument("--warm-up", type=int, default=30)
    parser.add_argument(
        "--gap", type=float, default=0.02, help="seconds between transactions (the launch bench's are apart)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="child processes per build and store")
    parser.add_argument("--baseline", type=Path, help="a directory holding another build's coordinator/")
    parser.add_argument("--only", choices=["postgres", "sqlite"])
    parser.add_argument("--child", choices=["postgres", "sqlite"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.warm_up, args.gap)))
        return
    builds = {"current": ROOT}
    if args.baseline:
        builds["baseline"] = args.baseline.resolve()
    stores = [args.only] if args.only else ["postgres", "sqlite"]
    samples = {b: {s: {"wall": [], "cpu": []} for s in stores} for b in builds}
    for r in range(args.rounds):
        for store_kind in stores:
            order = list(builds) if r % 2 == 0 else list(reversed(builds))
            for build in order:
                got = run_child(builds[build], store_kind, args.n, args.warm_up, args.gap)
                for what in ("wall", "cpu"):
                    samples[build][store_kind][what] += got[what]
                wall, cpu = statistics.median(got["wall"]), statistics.median(got["cpu"])
                print(
                    f"round {r + 1} {build:8s} {store_kind:8s} p50 {wall:.3f} ms (cpu {cpu:.3f})", flush=True
                )
    result: dict[str, object] = {}
    for build in builds:
        into = result if build == "current" else result.setdefault(build, {})
        for s in stores:
            wall, cpu = figures(samples[build][s]["wall"]), figures(samples[build][s]["cpu"])
            into[s] = {**wall, "cpu_p50_ms": cpu["p50_ms"]}  # type: ignore[index]
            print(
                f"{build:8s} {s:8s} p50 {wall['p50_ms']:.3f} ms  p90 {wall['p90_ms']:.3f} ms  "
                f"cpu p50 {cpu['p50_ms']:.3f} ms  (n={wall['n']})"
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
