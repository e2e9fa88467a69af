"""How an attempt's result becomes state and events — pure functions of the spec, no I/O.

- `plan`: an attempt ends succeeded, blocked (not retried), retried after the job's backoff,
  or failed for good;
- `output_events`: a succeeded run's completion events, one per output dataset, carrying what
  the job reported (rows, location, columns);
- `failed_events`: a run that failed for good or was blocked announces it on each output, so
  downstream consumers know the partition will not come — except the outputs its result says
  ended otherwise (a dbt invocation: a model built beside one that failed is announced built, a
  skipped one not at all);
- `output_event_id`: deterministic, so a result recorded twice (after a crash) is one event;
- `unlaunchable`: checked again at launch, as the spec or the data may have changed since the
  run was created.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from coordinator import readiness
from coordinator.events import CompletionEvent, Status
from coordinator.launchers.base import Handle, OutputReport, RunResult
from coordinator.spec.models import JobSpec, PipelineSpec
from coordinator.store.store import Finish, RunRow

PRODUCER = "coordinator"


def output_event_id(run_id: str, attempt: int, dataset: str, status: str) -> str:
    """Deterministic, so a result recorded twice (after a crash) is the same event."""
    return hashlib.sha256(f"{run_id}\n{attempt}\n{dataset}\n{status}".encode()).hexdigest()[:32]


def plan(
    job: JobSpec | None, run: RunRow, result: RunResult, now: float, handle: Handle | None = None
) -> Finish:
    """How an attempt ends: succeeded, blocked, retried after backoff, or failed for good.

    A launcher that reports details {"blocked": true} (the input does not fit, e.g. a model
    signature) is not retried: the same inputs would be refused again. Like a contract
    violation, it waits for new input versions or `coord retry`. A job no longer in the spec
    is not retried either.
    """
    details = dict(result.details) or None
    if result.succeeded or result.details.get("blocked"):
        state, error = ("succeeded", None) if result.succeeded else ("blocked", result.error)
        return Finish(run.run_id, run.attempt, state, error, result.log_path, details=details, handle=handle)
    retry_at = None
    if job is not None and run.attempt < run.max_attempts:
        retry_at = now + job.retries.delay_s(run.attempt)
    return Finish(run.run_id, run.attempt, "failed", result.error, result.log_path, retry_at, details, handle)


def _succeeded(run: RunRow, ds: str, o: OutputReport | None, produced_at: datetime) -> CompletionEvent:
    return CompletionEvent(
        event_id=output_event_id(run.run_id, run.attempt, ds, "succeeded"),
        dataset=ds,
        partition=run.partition,
        producer=PRODUCER,
        producer_run_id=run.run_id,
        produced_at=produced_at,
        row_count=o.row_count if o else None,
        location=o.location if o else None,
        columns=o.columns if o else None,
        attributes={"job": run.job, **(dict(o.attributes) if o else {})},
    )


def output_events(spec: PipelineSpec, run: RunRow, result: RunResult, now: float) -> list[CompletionEvent]:
    reports = {o.dataset: o for o in result.outputs}
    produced_at = datetime.fromtimestamp(now, UTC)
    return [_succeeded(run, ds, reports.get(ds), produced_at) for ds in spec.jobs[run.job].outputs]


def failed_events(
    spec: PipelineSpec, run: RunRow, error: str, result: RunResult | None = None, now: float = 0.0
) -> list[CompletionEvent]:
    job = spec.jobs.get(run.job)
    reports = {o.dataset: o for o in result.outputs if o.status} if result else {}
    events = []
    for ds in job.outputs if job else ():
        o = reports.get(ds)
        if o is not None and o.status == "skipped":
            continue
        if o is not None and o.status == "succeeded":
            events.append(_succeeded(run, ds, o, datetime.fromtimestamp(now, UTC)))
            continue
        why = o.error if o is not None and o.error else error
        events.append(
            CompletionEvent(
                event_id=output_event_id(run.run_id, run.attempt, ds, "failed"),
                dataset=ds,
                partition=run.partition,
                status=Status.FAILED,
                producer=PRODUCER,
                producer_run_id=run.run_id,
                error=why[:20000],
                attributes={"job": run.job},
            )
        )
    return events


def unlaunchable(spec: PipelineSpec, run: RunRow) -> str | None:
    """Why a claimed run must not start, or None. Checked again at launch: a retried blocked run
    must not start on incompatible data."""
    if run.job not in spec.jobs:
        return f"job {run.job!r} is no longer in the spec"
    violation = readiness.check_contract(spec, run.job, run.inputs)
    return str(violation) if violation else None
