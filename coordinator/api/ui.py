"""The web UI: the pipeline graph with live job states, the partition grid, runs with their logs,
and retry/rerun buttons. Everything is served from this package (static/), nothing from the
internet. Reading needs no token; the actions need the bearer token (settings.api_token).

    GET  /ui, /ui/runs/{id}            the page (one HTML file, app.js, style.css)
    GET  /api/partitions               partition keys seen, newest first
    GET  /api/graph?partition=P        {"svg": ..., "jobs": {job: {state, run_id}}}
    GET  /api/grid?last=N              datasets × partitions: state, freshness, staleness
    GET  /api/runs?job=&state=&limit=  the latest runs
    GET  /api/runs/{id}                one run: inputs, command, attempts, log tail, outputs, root cause
    POST /api/runs/{id}/retry          a failed or blocked run gets a fresh retry budget   (token)
    POST /api/runs/{id}/cancel         stop a run's job, mark it cancelled (downstream waits) (token)
    POST /api/jobs/{job}/rerun?partition=P   a new run on the latest inputs                (token)
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from coordinator import history, operations, readiness
from coordinator.api.graph import JobState, render_svg
from coordinator.errors import CoordinatorError
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec
from coordinator.staleness import stale_partitions
from coordinator.store.store import RunRow, StateStore

STATIC = Path(__file__).parent / "static"
router = APIRouter(tags=["ui"])


def mount(app: FastAPI, spec: PipelineSpec, store: StateStore) -> None:
    app.state.spec, app.state.store = spec, store
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")


def _ctx(request: Request) -> tuple[Settings, PipelineSpec, StateStore]:
    return request.app.state.settings, request.app.state.spec, request.app.state.store


def _authorize(settings: Settings, authorization: str | None) -> None:
    if settings.api_token is None:
        raise HTTPException(503, detail={"reason": "not_configured", "detail": "set COORD_API_TOKEN"})
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.api_token.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise HTTPException(
            401,
            detail={"reason": "unauthenticated", "detail": "bearer token required"},
            headers={"WWW-Authenticate": "Bearer"},
        )


def _run_json(run: RunRow) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": run.job,
        "partition": run.partition,
        "state": run.state,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "owner": run.owner,  # the lease (instance#epoch) running it; its state: /api/runs
    }


# ---------------------------------------------------------------------- pages
@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui", include_in_schema=False)
@router.get("/ui/runs/{run_id}", include_in_schema=False)
def page(run_id: str | None = None) -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


# ---------------------------------------------------------------------- reads
@router.get("/api/partitions")
def partitions(request: Request, limit: int = 60) -> dict[str, Any]:
    _, _, store = _ctx(request)
    with store.begin() as tx:
        keys = tx.partition_keys()
    return {"partitions": sorted(keys, reverse=True)[:limit]}


@router.get("/api/graph")
def graph(request: Request, partition: str | None = None) -> dict[str, Any]:
    _, spec, store = _ctx(request)
    jobs: dict[str, JobState] = {}
    with store.begin() as tx:
        versions = {(v.dataset, v.partition) for v in tx.versions_at([partition, None])}
        for name in spec.jobs:
            unpartitioned = spec.job_partitioning(name) == "none"
            key = None if unpartitioned else partition
            if key is None and not unpartitioned:  # no partition chosen: the job's latest run
                runs = tx.list_runs(job=name, limit=1)
            else:
                runs = tx.list_runs(job=name, partition=key or "", limit=1)
            if runs:
                jobs[name] = JobState(runs[0].state, runs[0].run_id)
                continue
            needed = readiness.needed(spec, name, key)
            have = sum(1 for k in needed if k in versions)
            jobs[name] = JobState("waiting" if have else "idle")
    complete = set()
    for ds in set(spec.datasets) | set(spec.producers):
        key = None if spec.partitioning(ds) == "none" else partition
        if (ds, key) in versions:
            complete.add(ds)
    return {
        "partition": partition,
        "svg": render_svg(spec, jobs, complete),
        "jobs": {j: {"state": s.state, "run_id": s.run_id} for j, s in jobs.items()},
    }


@router.get("/api/grid")
def grid(request: Request, last: int = Query(7, ge=1, le=200)) -> dict[str, Any]:
    _, spec, store = _ctx(request)
    now = time.time()
    with store.begin() as tx:  # the newest `last` partition keys, then only their rows
        keys = sorted(tx.partition_keys())[-last:]
        wanted = [*keys, None]
        versions = tx.versions_at(wanted)
        recent = tx.runs_at(wanted)
        stale = stale_partitions(tx, spec.jobs)  # built on a superseded version (staleness.py)
    stale_at: dict[tuple[str, str | None], list[str]] = {}
    for s in stale:
        stale_at.setdefault((s.job, s.partition), []).append(s.describe())
    run_state: dict[tuple[str, str | None], RunRow] = {}
    for r in recent:  # oldest first: the newest run wins
        run_state[(r.job, r.partition)] = r
    by_key = {(v.dataset, v.partition): v for v in versions}
    rows = []
    for ds in sorted(set(spec.datasets) | set(spec.producers) | {v.dataset for v in versions}):
        producer = spec.producers.get(ds)
        cells = []
        for key in keys if spec.partitioning(ds) != "none" else [None]:
            v = by_key.get((ds, key))
            run = run_state.get((producer, key)) if producer else None
            state = run.state if run and run.state != "succeeded" else ("complete" if v else "missing")
            cells.append(
                {
                    "partition": key,
                    "state": state,
                    "run_id": run.run_id if run else None,
                    "event_id": v.event_id if v else None,
                    "age_s": round(now - v.produced_at) if v else None,
                    "stale": "; ".join(stale_at.get((producer, key), ())) or None,
                }
            )
        newest = max((v.produced_at for (d, _), v in by_key.items() if d == ds), default=None)
        rows.append(
            {
                "dataset": ds,
                "producer": producer,
                "partitioned": spec.partitioning(ds) != "none",
                "fresh_s": round(now - newest) if newest else None,
                "cells": cells,
            }
        )
    return {"partitions": keys, "rows": rows, "stale": [s.as_json() for s in stale]}


@router.get("/api/runs")
def runs(
    request: Request,
    job: str | None = None,
    state: str | None = None,
    partition: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> dict[str, Any]:
    from coordinator.lease import run_lease
    from coordinator.store import leases as L

    _, _, store = _ctx(request)
    with store.begin() as tx:
        rows = tx.list_runs(job=job, states=[state] if state else None, partition=partition, limit=limit)
        leases = L.every(tx)
    now = time.time()
    return {"runs": [{**_run_json(r), "lease": run_lease(r.owner, leases, now)} for r in rows]}


@router.get("/api/runs/{run_id}")
def run_detail(request: Request, run_id: str, lines: int = Query(60, ge=1, le=2000)) -> dict[str, Any]:
    settings, spec, store = _ctx(request)
    with store.begin() as tx:
        run = tx.get_run(run_id)
        if run is None:
            raise HTTPException(404, detail={"reason": "unknown_run", "detail": run_id})
        attempts = tx.attempts(run_id)
        outputs = history.run_outputs(tx, spec, run)
        cause = history.root_cause(tx, spec, run.job, run.partition) if run.state != "succeeded" else None
    log_path = history.attempt_log(run, attempts[-1], settings.home) if attempts else None
    return {
        **_run_json(run),
        "command": history.launched_command(run),
        "inputs": [
            {"dataset": v.dataset, "partition": v.partition, "event_id": v.event_id, "row_count": v.row_count}
            for v in run.inputs
        ],
        "attempts": attempts,
        "outputs": [
            {
                "dataset": e.dataset,
                "partition": e.partition,
                "status": e.status.value,
                "event_id": e.event_id,
                "row_count": e.row_count,
                "error": e.error,
            }
            for e in outputs
        ],
        "root_cause": _run_json(cause) if cause else None,
        "log": history.log_tail(log_path, lines) if log_path else "",
    }


# ---------------------------------------------------------------------- actions
@router.post("/api/runs/{run_id}/retry")
def retry(request: Request, run_id: str, authorization: str | None = Header(default=None)) -> dict[str, Any]:
    settings, _, store = _ctx(request)
    _authorize(settings, authorization)
    try:
        run = operations.retry(store, run_id)
    except CoordinatorError as exc:
        raise HTTPException(409, detail={"reason": "cannot_retry", "detail": str(exc)}) from None
    return _run_json(run)


@router.post("/api/runs/{run_id}/cancel")
def cancel(request: Request, run_id: str, authorization: str | None = Header(default=None)) -> dict[str, Any]:
    import socket

    from coordinator.launchers.registry import build_launcher

    settings, _, store = _ctx(request)
    _authorize(settings, authorization)
    try:
        run = operations.cancel(
            store, run_id, lambda kind: build_launcher(kind, settings), socket.gethostname()
        )
    except CoordinatorError as exc:
        raise HTTPException(409, detail={"reason": "cannot_cancel", "detail": str(exc)}) from None
    return _run_json(run)


@router.post("/api/jobs/{job}/rerun")
def rerun(
    request: Request, job: str, partition: str | None = None, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    settings, spec, store = _ctx(request)
    _authorize(settings, authorization)
    if job not in spec.jobs:
        raise HTTPException(404, detail={"reason": "unknown_job", "detail": job})
    result = operations.rerun(store, spec, job, partition)
    if result.waiting:
        _, missing = result.waiting[0]
        raise HTTPException(409, detail={"reason": "waiting", "detail": f"waiting for {', '.join(missing)}"})
    return {"created": [_run_json(r) for r in result.created]}
