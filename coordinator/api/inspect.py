"""The UI's reads for tracing and waiting: why a job partition is not running, the runs of
each job partition over time, and a dataset's versions with their columns.

    GET  /api/why?job=J&partition=P      reasons, one a line (coordinator/waiting.py)
    GET  /api/timeline?last=N            jobs × the newest N partitions: the latest run of each,
                                         its start, duration and how many runs it took
    GET  /api/datasets/{name}?partition=P&versions=N
                                         its partitions, then the chosen one's versions: producer
                                         run, rows, columns and what changed from the one before,
                                         and the runs that consumed each
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from coordinator import history, runview, waiting
from coordinator.auth import require

router = APIRouter(tags=["ui"], dependencies=[Depends(require("read"))])


def _partition_of(spec, job: str, partition: str | None) -> str | None:
    return None if spec.job_partitioning(job) == "none" else partition


@router.get("/api/why")
def why(request: Request, job: str, partition: str | None = None) -> dict[str, Any]:
    spec, store = request.app.state.spec, request.app.state.store
    if job not in spec.jobs:
        raise HTTPException(404, detail={"reason": "unknown_job", "detail": job})
    key = _partition_of(spec, job, partition)
    if key is None and spec.job_partitioning(job) != "none":
        raise HTTPException(422, detail={"reason": "partition_required", "detail": f"{job} is partitioned"})
    with store.begin() as tx:
        found = waiting.explain(tx, spec, job, key)
    masker = request.app.state.masker
    for reason in found["reasons"]:
        reason["text"] = masker.text(reason["text"])
    return found


@router.get("/api/timeline")
def timeline(request: Request, last: int = Query(14, ge=1, le=200)) -> dict[str, Any]:
    spec, store = request.app.state.spec, request.app.state.store
    now = time.time()
    with store.begin() as tx:
        keys = sorted(tx.partition_keys())[-last:]
        recent = tx.runs_at([*keys, None])  # oldest first
        superseded = tx.superseding(recent)
    cells: dict[tuple[str, str | None], dict[str, Any]] = {}
    for r in recent:
        before = cells.get((r.job, r.partition))
        cell = runview.basic(r, superseded.get(r.run_id), now)
        cell["error"] = None  # the run page has it, masked
        cell["runs"] = (before["runs"] if before else 0) + 1
        cells[(r.job, r.partition)] = cell
    rows = []
    for job in spec.jobs:
        unpartitioned = spec.job_partitioning(job) == "none"
        row_keys = [None] if unpartitioned else keys
        rows.append(
            {
                "job": job,
                "partitioned": not unpartitioned,
                "cells": [cells.get((job, k)) or {"partition": k, "state": "none"} for k in row_keys],
            }
        )
    return {"partitions": keys, "rows": rows}


@router.get("/api/datasets/{name}")
def dataset(
    request: Request, name: str, partition: str | None = None, versions: int = Query(20, ge=1, le=500)
) -> dict[str, Any]:
    spec, store = request.app.state.spec, request.app.state.store
    known = set(spec.datasets) | set(spec.producers)
    with store.begin() as tx:
        latest = tx.latest_versions(name)
        if name not in known and not latest:
            raise HTTPException(404, detail={"reason": "unknown_dataset", "detail": name})
        parts = sorted((v.partition for v in latest), key=lambda p: p or "", reverse=True)
        chosen = partition if partition is not None else (parts[0] if parts else None)
        ids = [eid for _, eid in tx.version_history(name, chosen)][-versions:]
        found = []
        for eid in reversed(ids):  # newest first
            item = runview.version_json(tx, name, chosen, eid)
            ev = tx.get_event(eid)
            consumers = history.consuming_runs(tx, spec, ev) if ev else []
            item["consumers"] = [{"run_id": c.run_id, "job": c.job, "state": c.state} for c in consumers]
            found.append(item)
    now = time.time()
    newest = max((v.produced_at for v in latest), default=None)
    return {
        "dataset": name,
        "producer": spec.producers.get(name),
        "consumers": sorted({job for job, _ in spec.consumers.get(name, ())}),
        "partitioning": spec.partitioning(name),
        "fresh_s": round(now - newest) if newest else None,
        "partitions": [
            {
                "partition": v.partition,
                "event_id": v.event_id,
                "row_count": v.row_count,
                "age_s": round(now - v.produced_at),
            }
            for v in sorted(latest, key=lambda v: v.partition or "", reverse=True)
        ],
        "partition": chosen,
        "versions": found,
    }
