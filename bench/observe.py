"""How fast the observe side answers over a long history: the UI's JSON, /metrics and lineage.

A SQLite state store is filled with DAYS days of a three-job pipeline (raw.a → prep → clean.a;
clean.a + raw.b → load → mid → after → out): the events, partition versions and runs the engine
would have recorded, each run succeeded with its output event. Then each read is timed REPS
times and the median printed; the last line is one JSON object.

    python bench/observe.py [--days 1000] [--reps 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from coordinator import history
from coordinator.api.app import create_app
from coordinator.engine import output_event_id
from coordinator.events import CompletionEvent
from coordinator.metrics import Metrics
from coordinator.readiness import Candidate, Version
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store.store import StateStore

SPEC = """\
datasets:
  raw.a: {partitioning: daily}
  raw.b: {partitioning: daily}
jobs:
  prep: {kind: command, inputs: [raw.a], outputs: [clean.a], settings: {command: "true"}}
  load: {kind: command, inputs: [clean.a, raw.b], outputs: [mid], settings: {command: "true"}}
  after: {kind: command, inputs: [mid], outputs: [out], settings: {command: "true"}}
"""


def fill(store: StateStore, spec, days: int) -> list[str]:
    keys = [(date(2020, 1, 1) + timedelta(days=i)).isoformat() for i in range(days)]
    pools = {j: "default" for j in spec.jobs}
    budgets = {j: 1 for j in spec.jobs}
    now = time.time()
    with store.begin() as tx:
        for key in keys:
            latest: dict[str, CompletionEvent] = {}
            for ds in ("raw.a", "raw.b"):
                latest[ds] = CompletionEvent(event_id=f"{ds}-{key}", dataset=ds, partition=key, row_count=10)
            tx.insert_events(list(latest.values()), now)
            for job in ("prep", "load", "after"):
                inputs = tuple(Version.of(latest[i.dataset]) for i in spec.jobs[job].inputs)
                [run] = tx.insert_runs([Candidate(job, key, inputs)], pools, budgets, now)
                [run] = tx.claim("default", 10, "bench", now)
                tx.finish(run.run_id, run.attempt, "succeeded", now)
                out = spec.jobs[job].outputs[0]
                ev = CompletionEvent(
                    event_id=output_event_id(run.run_id, 1, out, "succeeded"),
                    dataset=out,
                    partition=key,
                    producer="coordinator",
                    producer_run_id=run.run_id,
                )
                tx.insert_events([ev], now)
                latest[out] = ev
            tx.save_versions([Version.of(e) for e in latest.values()], now)
    return keys


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    spec = parse_spec(SPEC)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), bus="local")
        with StateStore(settings.resolved_state_url()) as store:
            t = time.perf_counter()
            keys = fill(store, spec, args.days)
            fill_s = time.perf_counter() - t
            metrics = Metrics().watch(store)
            mid = keys[len(keys) // 2]
            with store.begin() as tx:
                run_id = tx.list_runs(job="load", partition=mid)[0].run_id
                ev = history.latest_event(tx, "raw.b", mid)

            def lineage() -> None:
                with store.begin() as tx:
                    history.downstream(tx, spec, ev)

            with TestClient(create_app(settings, metrics=metrics, spec=spec, store=store)) as client:

                def get(url: str):
                    return lambda: client.get(url).raise_for_status()

                figures = {
                    "days": args.days,
                    "runs": 3 * args.days,
                    "fill_s": round(fill_s, 1),
                    "grid_ms": median_ms(get("/api/grid?last=7"), args.reps),
                    "graph_ms": median_ms(get(f"/api/graph?partition={mid}"), args.reps),
                    "run_detail_ms": median_ms(get(f"/api/runs/{run_id}"), args.reps),
                    "metrics_scrape_ms": median_ms(get("/metrics"), args.reps),
                    "lineage_down_ms": median_ms(lineage, args.reps),
                }
    for k, v in figures.items():
        print(f"{k:>18}: {v}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
