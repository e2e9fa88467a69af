"""Operator actions on the state store: retry a run, re-run a job partition, backfill a range,
cancel a run.

They only create or reset runs (in one transaction each); the engine launches them — the
running service (any live instance: `live_instances`), or, when none runs, `coord backfill`
itself, under a lease of its own, with a progress bar. Succeeded upstream work is never redone:
a re-run consumes the latest recorded input versions. `cancel` stops the run's job from here
(its process group on this host, or its Spark application through the master) and marks the
run cancelled; the instance waiting on it then finds it ended and records nothing more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from coordinator import readiness
from coordinator.admission import BAD_PARTITION
from coordinator.adoption import reachable
from coordinator.errors import EventError, LaunchError, StoreError
from coordinator.launchers.base import Launcher
from coordinator.spec import partitions as P
from coordinator.spec.models import PipelineSpec
from coordinator.store import leases as L
from coordinator.store.store import RunRow, StateStore


@dataclass(frozen=True)
class Backfill:
    created: list[RunRow]
    waiting: list[tuple[str | None, list[str]]]  # partitions skipped, with their missing inputs


def _one(tx, run_id: str) -> RunRow:
    matches = tx.find_runs(run_id)
    if len(matches) != 1:
        raise StoreError(f"no run {run_id!r}" if not matches else f"run id prefix {run_id!r} is ambiguous")
    return matches[0]


def retry(store: StateStore, run_id: str) -> RunRow:
    """A failed, blocked or cancelled run becomes ready again with a fresh retry budget.
    StoreError if not."""
    with store.begin() as tx:
        return tx.retry(_one(tx, run_id).run_id, time.time())


def live_instances(store: StateStore) -> list[str]:
    """The lease ids of the coordinator instances alive now (they execute queued runs)."""
    with store.begin() as tx:
        return [lease.lease_id for lease in L.live(tx, time.time())]


def cancel(store: StateStore, run_id: str, launcher: Callable[[str], Launcher], host: str) -> RunRow:
    """Stop a ready, starting or running run's job and mark the run cancelled (downstream waits;
    `retry` revives it). StoreError when it is not open or moved on meanwhile; LaunchError when
    its job runs where this host cannot reach it (a process on another host)."""
    with store.begin() as tx:
        run = _one(tx, run_id)
        lease = L.every(tx).get(run.owner or "")
    if run.state not in ("ready", "starting", "running"):
        raise StoreError(
            f"run {run.run_id} is {run.state}; only ready, starting or running runs can be cancelled"
        )
    if run.state == "starting" and run.handle is None:
        raise StoreError(f"run {run.run_id} is being launched by {run.owner}; cancel it again in a moment")
    handle = run.handle if run.state != "ready" else None
    if handle is not None:
        owner_host = lease.host if lease is not None else host
        if not reachable(handle, owner_host, host):
            raise LaunchError(f"run {run.run_id} runs on {owner_host} (lease {run.owner}); cancel it there")
    with store.begin() as tx:  # first, so the instance waiting on the job records nothing over it
        if not L.cancel_run(tx, run.run_id, run.attempt, time.time(), "cancelled by an operator"):
            now = tx.get_run(run.run_id)
            raise StoreError(f"run {run.run_id} ended meanwhile ({now.state if now else 'gone'})")
    if handle is not None:
        launcher(handle.kind).cancel(handle)
    with store.begin() as tx:
        return tx.get_run(run.run_id)  # type: ignore[return-value]


def missing_inputs(
    spec: PipelineSpec, snap: readiness.Snapshot, job: str, partition: str | None
) -> list[str]:
    return [
        f"{d}[{p}]" if p else d
        for d, p in readiness.needed(spec, job, partition)
        if (d, p) not in snap.latest
    ]


def partition_problem(spec: PipelineSpec, job: str, partition: str | None) -> EventError | None:
    """Why `partition` is no key of `job` (EventError `bad_partition`, the admission's reason);
    None when it is one. Without this check a key the job cannot have gave a run of an
    unpartitioned job under a partition, or "waiting for" inputs no event could ever bring."""
    problem = P.key_problem(spec.job_partitioning(job), partition)
    return None if problem is None else EventError(BAD_PARTITION, f"job {job}: {problem}")


def backfill(store: StateStore, spec: PipelineSpec, job: str, partitions: list[str | None]) -> Backfill:
    """Runs of `job` for every partition whose inputs are complete (even if it ran before).
    EventError (`bad_partition`) when one of `partitions` is no key of the job's partitioning,
    before anything is created."""
    if job not in spec.jobs:
        raise KeyError(f"unknown job {job!r}")
    for p in partitions:
        problem = partition_problem(spec, job, p)
        if problem is not None:
            raise problem
    pools, budgets = spec.job_pools, spec.attempt_budgets
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
    """The job's partition keys from `first` to `last`; ValueError when one is not a key of the
    job's partitioning or the range is reversed (it would backfill nothing, silently)."""
    keys = P.key_range(spec.job_partitioning(job), first, last)
    if not keys:
        raise ValueError(f"--from {first} comes after --to {last}: the range is empty")
    return keys
