"""Why is a job partition not running? The answer in the terms an operator acts on.

Read from what the store and readiness already know, one reason a line, with its kind so a
page or a script can act on it:

    missing      an input partition has no version yet (and, when a job of the pipeline produces
                 it, that job's state there: not run, failed, running ...)
    retry_due    the run is ready but not before T (a retry's backoff)
    pool_full    the run is due, its pool has no free slot (n of size in use)
    queued       an earlier run of the same job partition is still open: one runs at a time
    no_instance  runs are queued but no coordinator instance is alive to start them
    due          ready, due, a slot free and an instance alive: it starts at the next turn
    dead_owner   the run is starting/running under an instance whose lease is gone
    failed / blocked / cancelled   the last run ended so; `next` says what to run
    running / succeeded            nothing waits
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from coordinator import readiness, runview
from coordinator.lease import run_lease
from coordinator.spec.models import PipelineSpec
from coordinator.store import leases as L

if TYPE_CHECKING:
    from coordinator.store.store import RunRow, Tx


def _key(dataset: str, partition: str | None) -> str:
    return f"{dataset}[{partition}]" if partition else dataset


def explain(
    tx: Tx, spec: PipelineSpec, job: str, partition: str | None, now: float | None = None
) -> dict[str, Any]:
    """{"job", "partition", "state", "run_id", "reasons": [{"kind", "text", ...}], "next"}."""
    now = time.time() if now is None else now
    runs = tx.list_runs(job=job, partition=partition or "", limit=20)
    last = runs[0] if runs else None
    reasons: list[dict[str, Any]] = []
    if last is None:
        reasons += _missing(tx, spec, job, partition)
        if not reasons:
            reasons.append(
                _reason("inputs_complete", "every input has a version: a running coordinator creates the run")
            )
        state = "waiting" if any(r["kind"] == "missing" for r in reasons) else "idle"
        return {
            "job": job,
            "partition": partition,
            "state": state,
            "run_id": None,
            "reasons": reasons,
            "next": None,
        }
    leases = L.every(tx)
    live = [lease for lease in leases.values() if lease.status(now) == "live"]
    if last.state == "ready":
        reasons += _queued(tx, spec, last, runs, now)
        if not live:
            reasons.append(
                _reason(
                    "no_instance", "no coordinator instance is alive to start it (coord serve, coord run)"
                )
            )
        elif not reasons:
            reasons.append(_reason("due", "ready and due: a live instance starts it at its next turn"))
    elif last.state in L.ACTIVE:
        lease = run_lease(last.owner, leases, now)
        if lease not in ("live", ""):
            then = "a live instance adopts it" if live else "no live instance can adopt it"
            text = f"{last.state} under {last.owner}, whose lease is {lease}: {then}"
            reasons.append(_reason("dead_owner", text, owner=last.owner, lease=lease))
        else:
            reasons.append(_reason("running", f"{last.state} under {last.owner}"))
    superseded = tx.superseding([last]).get(last.run_id)
    if last.state in runview.REDO:
        reasons.append(_reason(last.state, f"the last run {last.state}: {last.error or ''}".rstrip(": ")))
        reasons += _missing(tx, spec, job, partition)
    elif last.state == "succeeded":
        reasons.append(_reason("succeeded", "succeeded; it runs again when an input gets a newer version"))
    return {
        "job": job,
        "partition": partition,
        "state": last.state,
        "run_id": last.run_id,
        "reasons": reasons,
        "next": runview.next_step(tx, last, superseded),
    }


def _missing(tx: Tx, spec: PipelineSpec, job: str, partition: str | None) -> list[dict[str, Any]]:
    out = []
    for dataset, key in readiness.needed(spec, job, partition):
        if tx.version_event_id(dataset, key) is not None:
            continue
        producer = spec.producers.get(dataset)
        upstream = tx.list_runs(job=producer, partition=key or "", limit=1) if producer else []
        if producer is None:
            text = f"{_key(dataset, key)} has no version yet (published from outside the pipeline)"
        elif not upstream:
            text = f"{_key(dataset, key)} has no version yet: {producer} has not run for it"
        else:
            text = f"{_key(dataset, key)} has no version yet: {producer}'s run there is {upstream[0].state}"
        ran = upstream[0].run_id if upstream else None
        out.append(
            _reason("missing", text, dataset=dataset, partition=key, producer=producer, producer_run_id=ran)
        )
    return out


def _queued(tx: Tx, spec: PipelineSpec, run: RunRow, runs: list[RunRow], now: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if run.not_before > now:
        text = f"attempt {run.attempt + 1} is due at {_iso(run.not_before)} (in {run.not_before - now:.0f} s)"
        out.append(_reason("retry_due", text, at=run.not_before))
    earlier = [r for r in runs[1:] if r.state in ("ready", "starting", "running")]
    if earlier:
        first = earlier[-1]
        text = f"an earlier run of this partition ({first.run_id[:12]}) is {first.state}: one runs at a time"
        out.append(_reason("queued", text, run_id=first.run_id))
    size = spec.pool_size(run.pool)
    used = tx.pool_usage().get(run.pool, 0)
    if used >= size:
        text = f"pool {run.pool} is full ({used} of {size} slots in use)"
        out.append(_reason("pool_full", text, pool=run.pool, used=used, size=size))
    return out


def _reason(kind: str, text: str, **facts: Any) -> dict[str, Any]:
    return {"kind": kind, "text": text, **facts}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
