"""The journey's runs as the state store records them, reduced to what the demo shows.

A (job, partition) may have several runs (a rebuilt input makes a new one); the demo shows the
newest of each. A job partition with no run yet is "waiting": the store only holds runs that
became ready, so the waiting ones are the expected partitions that have none.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from coordinator.demo.summary import RunSummary
from coordinator.store.store import RunRow, StateStore

ACTIVE = ("starting", "running")


def summarize(run: RunRow, kind: str, now: float) -> RunSummary:
    state = "running" if run.state in ACTIVE else run.state
    seconds = None
    if run.started_at is not None:
        seconds = round((run.finished_at or now) - run.started_at, 2) if run.state != "ready" else None
    error = run.error if run.state in ("failed", "blocked") else None
    return RunSummary(
        job=run.job,
        kind=kind,
        partition=run.partition,
        state=state,
        seconds=seconds,
        attempts=max(run.attempt, 1),
        error=error,
    )


def newest_runs(store: StateStore, jobs: Iterable[str], limit: int = 2000) -> list[RunRow]:
    """The newest run of each (job, partition) of `jobs`."""
    wanted = set(jobs)
    with store.begin() as tx:
        rows = tx.list_runs(limit=limit)
    newest: dict[tuple[str, str | None], RunRow] = {}
    for row in rows:  # newest first
        if row.job in wanted:
            newest.setdefault((row.job, row.partition), row)
    return list(newest.values())


def journey_runs(store: StateStore, kinds: Mapping[str, str], partitions: Sequence[str]) -> list[RunSummary]:
    """One line per expected (job, partition), in pipeline order then partition order; `kinds`
    maps each job of the journey to its kind."""
    now = time.time()
    found = {(r.job, r.partition): r for r in newest_runs(store, kinds)}
    out = []
    for job, kind in kinds.items():
        for partition in partitions:
            run = found.get((job, partition))
            waiting = RunSummary(job=job, kind=kind, partition=partition, state="waiting")
            out.append(summarize(run, kind, now) if run else waiting)
    return out
