"""A run as an operator reads it, the same in the UI's JSON and in `coord ... --json`.

What a stored run does not say by itself, computed from the store:
- `superseded_by`: a failed, blocked or cancelled run that a newer run of the same job partition
  replaced is history, not the partition's state (dimmed, not counted by the gauges; the newer
  run is where to look and act);
- `try`: the attempt as n of the budget that applied — a retry gives a fresh budget, so the
  stored `max_attempts` grows (1/2, then 2/3, then 3/4) while each round is "1 of 2" again;
- `next`: the command that moves it on — `coord rerun JOB -p P` when an input has a newer version
  than the run consumed (a retry would reuse the old one and fail the same way), `coord retry RUN`
  when only the job went wrong;
- each input's version: its number among the partition's versions, the run that produced it,
  the columns it carried and how they differ from the version before (where a type changed).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from coordinator import history
from coordinator.events import Column
from coordinator.readiness import Version
from coordinator.spec.models import PipelineSpec

if TYPE_CHECKING:
    from coordinator.store.store import RunRow, Tx

RUN_STATES = ("ready", "starting", "running", "succeeded", "failed", "blocked", "cancelled")
REDO = ("failed", "blocked", "cancelled")  # ended without success: retried or re-run


def attempt_of_budget(run: RunRow) -> dict[str, int]:
    """The attempt within the budget that applied: every retry starts a round of `budget`."""
    first = run.max_attempts - run.budget  # attempts spent before this round
    return {"n": max(run.attempt - first, 0), "of": run.budget, "overall": run.attempt}


def duration_s(run: RunRow, now: float) -> float | None:
    if run.started_at is None:
        return None
    return round((run.finished_at or now) - run.started_at, 3)


def basic(run: RunRow, superseded_by: str | None, now: float | None = None) -> dict[str, Any]:
    """The fields of a run every list shows (no masking here: the caller masks `error`)."""
    now = time.time() if now is None else now
    return {
        "run_id": run.run_id,
        "job": run.job,
        "partition": run.partition,
        "state": run.state,
        "superseded_by": superseded_by,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "try": attempt_of_budget(run),
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": duration_s(run, now),
        "owner": run.owner,
    }


def rerun_command(run: RunRow) -> str:
    part = f" -p {shlex.quote(run.partition)}" if run.partition else ""
    return f"coord rerun {shlex.quote(run.job)}{part}"


def next_step(tx: Tx, run: RunRow, superseded_by: str | None) -> dict[str, str] | None:
    """What an operator should run next for this run, and why; None when nothing is to do."""
    if run.state not in REDO or superseded_by:
        return None
    changed = changed_inputs(tx, run)
    if changed:
        names = ", ".join(changed)
        return {
            "command": rerun_command(run),
            "why": f"{names} has a newer version than this run consumed; a retry would reuse the old one",
        }
    if run.state == "blocked":
        return {
            "command": rerun_command(run),
            "why": "blocked by its input: fix the data upstream (a new version), then re-run on it",
        }
    return {
        "command": f"coord retry {run.run_id[:12]}",
        "why": "the inputs are the latest; run the job again",
    }


def changed_inputs(tx: Tx, run: RunRow) -> list[str]:
    """The inputs (dataset[partition]) that have a newer version than the run consumed."""
    return [_key(v.dataset, v.partition) for v in run.inputs if _newer_version(tx, v) is not None]


def _key(dataset: str, partition: str | None) -> str:
    return f"{dataset}[{partition}]" if partition else dataset


def _newer_version(tx: Tx, v: Version) -> str | None:
    """The event id of the partition's latest version when it is not `v`."""
    latest = tx.version_event_id(v.dataset, v.partition)
    return latest if latest and latest != v.event_id else None


def column_diff(before: Sequence[Column] | None, after: Sequence[Column] | None) -> list[str]:
    """How the columns changed: 'plan: string → int64', '+ region (string)', '- legacy'."""
    if before is None or after is None:
        return []
    old, new = {c.name: c for c in before}, {c.name: c for c in after}
    out = []
    for name, c in new.items():
        if name not in old:
            out.append(f"+ {name} ({c.type})")
        elif old[name].type != c.type:
            out.append(f"{name}: {old[name].type} → {c.type}")
        elif old[name].nullable != c.nullable:
            out.append(f"{name}: {'nullable' if c.nullable else 'not null'}")
    out += [f"- {name}" for name in old if name not in new]
    return out


def columns_json(columns: Sequence[Column] | None) -> list[dict[str, Any]] | None:
    return None if columns is None else [c.model_dump() for c in columns]


def version_json(tx: Tx, dataset: str, partition: str | None, event_id: str) -> dict[str, Any]:
    """One version of a dataset partition: its number, producer, columns and their change."""
    ids = [eid for _, eid in tx.version_history(dataset, partition)]
    ev = tx.get_event(event_id)
    number = ids.index(event_id) + 1 if event_id in ids else None
    prev = tx.get_event(ids[number - 2]) if number and number > 1 else None
    producer = history.producing_run(tx, ev) if ev else None
    return {
        "dataset": dataset,
        "partition": partition,
        "event_id": event_id,
        "version": number,
        "versions": len(ids),
        "latest": bool(ids) and ids[-1] == event_id,
        "produced_at": ev.produced_at.timestamp() if ev else None,
        "row_count": ev.row_count if ev else None,
        "producer": ev.producer if ev else None,
        "producer_run": None
        if producer is None
        else {"run_id": producer.run_id, "job": producer.job, "state": producer.state},
        "columns": columns_json(ev.columns if ev else None),
        "changed": column_diff(prev.columns if prev else None, ev.columns if ev else None),
        "previous_event_id": prev.event_id if prev else None,
    }


def inputs_json(tx: Tx, run: RunRow) -> list[dict[str, Any]]:
    out = []
    for v in run.inputs:
        item = version_json(tx, v.dataset, v.partition, v.event_id)
        if item["columns"] is None:  # the event is gone (pruned): what the run kept
            item["columns"] = columns_json(v.columns)
        item["row_count"] = v.row_count if item["row_count"] is None else item["row_count"]
        item["newer_event_id"] = _newer_version(tx, v)
        out.append(item)
    return out


def outputs_json(tx: Tx, spec: PipelineSpec, run: RunRow) -> list[dict[str, Any]]:
    out = []
    for ev in history.run_outputs(tx, spec, run):
        consumers = history.consuming_runs(tx, spec, ev)
        out.append(
            {
                "dataset": ev.dataset,
                "partition": ev.partition,
                "status": ev.status.value,
                "event_id": ev.event_id,
                "row_count": ev.row_count,
                "error": ev.error,
                "columns": columns_json(ev.columns),
                "consumers": [{"run_id": c.run_id, "job": c.job, "state": c.state} for c in consumers],
            }
        )
    return out
