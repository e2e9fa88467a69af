"""Operator actions on the state store: retry a run, re-run a job partition, backfill a range.

They only create or reset runs (in one transaction each); the engine launches them — the
running service, or `coord backfill`, which executes what it created with a progress bar.
Succeeded upstream work is never redone: a re-run consumes the latest recorded input versions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from coordinator import readiness
from coordinator.errors import StoreError
from coordinator.spec import partitions as P
from coordinator.spec.models import PipelineSpec
from coordinator.store.store import RunRow, StateStore


@dataclass(frozen=True)
class Backfill:
    created: list[RunRow]
    waiting: list[tuple[str | None, list[str]]]  # partitions skipped, with their missing inputs


def retry(store: StateStore, run_id: str) -> RunRow:
    """A failed or blocked run becomes ready again with a fresh retry budget. StoreError if not."""
    with store.begin() as tx:
        matches = tx.find_runs(run_id)
        if len(matches) != 1:
            raise StoreError(
                f"no run {run_id!r}" if not matches else f"run id prefix {run_id!r} is ambiguous"
            )
        return tx.retry(matches[0].run_id, time.time())


def _pools(spec: PipelineSpec) -> tuple[dict[str, str], dict[str, int]]:
    return (
        {n: j.pool for n, j in spec.jobs.items()},
        {n: j.retries.max_attempts for n, j in spec.jobs.items()},
    )


def missing_inputs(
    spec: PipelineSpec, snap: readiness.Snapshot, job: str, partition: str | None
) -> list[str]:
    return [
        f"{d}[{p}]" if p else d
        for d, p in readiness.needed(spec, job, partition)
        if (d, p) not in snap.latest
    ]


def backfill(store: StateStore, spec: PipelineSpec, job: str, partitions: list[str | None]) -> Backfill:
    """Runs of `job` for every partition whose inputs are complete (even if it ran before)."""
    if job not in spec.jobs:
        raise KeyError(f"unknown job {job!r}")
    pools, budgets = _pools(spec)
    keys = [(job, p) for p in partitions]
    with store.begin() as tx:
        snap = tx.load_snapshot(spec, [], extra_jobs=keys)
        cands, waiting = [], []
        for _, p in keys:
            cand = readiness.evaluate(spec, snap, job, p, force=True)
            if cand is None:
                waiting.append((p, missing_inputs(spec, snap, job, p)))
            else:
                cands.append(cand)
        created = tx.insert_runs(cands, pools, budgets, time.time(), rerun=True)
    return Backfill(created, waiting)


def rerun(store: StateStore, spec: PipelineSpec, job: str, partition: str | None) -> Backfill:
    return backfill(store, spec, job, [partition])


def partition_range(spec: PipelineSpec, job: str, first: str, last: str) -> list[str]:
    return P.key_range(spec.job_partitioning(job), first, last)
