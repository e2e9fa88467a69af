"""The web UI: the pipeline graph with live job states, the partition grid, runs with their logs,
and retry/rerun buttons. Everything is served from this package (static/), nothing from the
internet. Reads need a token with scope `read` (or anonymous reads on loopback), the actions
`operate` (coordinator/auth.py); each action is audited with the token's name (store/audit.py).
Everything shown is masked (coordinator/secrets.py): command lines, errors, details, the log.

    GET  /ui, /ui/runs/{id}            the page (one HTML file, app.js, style.css)
    GET  /api/partitions               partition keys seen, newest first
    GET  /api/graph?partition=P        {"svg": ..., "jobs": {job: {state, run_id}}}
    GET  /api/grid?last=N              datasets × partitions: state, freshness, staleness
    GET  /api/runs?job=&state=&partition=&partition_from=&partition_to=&since=&until=&offset=&limit=
                                       a page of runs, newest first, with `total`; each with its
                                       start, duration, attempt of its budget and superseded_by
    GET  /api/runs/{id}                one run: inputs (their versions, producing runs, columns and
                                       what changed), command, attempts, log tail, outputs (their
                                       consumers), root cause, the next command, and the audit of
                                       operator actions on it
    GET  /api/streams                  each stream job's health from its workers' heartbeats: up,
                                       workers up and their partitions, the youngest beat's age,
                                       consumer lag summed, watermark, windows open, restarts,
                                       messages late (launchers/stream.stream_status)
    /api/why, /api/timeline, /api/datasets/{name}: api/inspect.py
    GET  /api/audit?limit=N            every operator action, newest first                  (admin)
    POST /api/runs/{id}/retry          a failed or blocked run gets a fresh retry budget    (operate)
    POST /api/runs/{id}/cancel         stop a run's job, mark it cancelled (downstream waits) (operate)
    POST /api/jobs/{job}/rerun?partition=P   a new run on the latest inputs                 (operate)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from coordinator import history, operations, readiness, runview
from coordinator.api import inspect
from coordinator.api.graph import JobState, render_svg
from coordinator.auth import Principal, require
from coordinator.errors import CoordinatorError, EventError
from coordinator.secrets import Masker
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec
from coordinator.staleness import stale_partitions
from coordinator.store import audit
from coordinator.store.store import RunRow, StateStore

STATIC = Path(__file__).parent / "static"
router = APIRouter(tags=["ui"])
READ = [Depends(require("read"))]
# Bounds of the paging parameters: a number the store's integers hold (SQLite's and PostgreSQL's
# 64 bits), far beyond any page a person looks at; above it FastAPI answers 422, not the store 500.
MAX_PAGE = 1_000_000_000


def mount(app: FastAPI, spec: PipelineSpec, store: StateStore) -> None:
    app.state.spec, app.state.store = spec, store
    app.state.masker = Masker.of(app.state.settings, spec)
    app.include_router(router)
    app.include_router(inspect.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")


def _ctx(request: Request) -> tuple[Settings, PipelineSpec, StateStore]:
    return request.app.state.settings, request.app.state.spec, request.app.state.store


def _masker(request: Request) -> Masker:
    return request.app.state.masker


def _run_json(run: RunRow, masker: Masker, superseded_by: str | None = None) -> dict[str, Any]:
    """A run's fields (runview.basic: start, duration, attempt of its budget), error masked;
    `owner` is the lease (instance#epoch) running it, its state is in /api/runs."""
    return {**runview.basic(run, superseded_by), "error": masker.text(run.error)}


# ---------------------------------------------------------------------- pages
@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui", include_in_schema=False)
@router.get("/ui/runs/{run_id}", include_in_schema=False)
def page(run_id: str | None = None) -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


# ---------------------------------------------------------------------- reads
@router.get("/api/partitions", dependencies=READ)
def partitions(request: Request, limit: int = Query(60, ge=1, le=MAX_PAGE)) -> dict[str, Any]:
    _, _, store = _ctx(request)
    with store.begin() as tx:
        keys = tx.partition_keys()
    return {"partitions": sorted(keys, reverse=True)[:limit]}


@router.get("/api/graph", dependencies=READ)
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
                jobs[name] = JobState(runs[0].state, runs[0].run_id, runview.duration_s(runs[0], time.time()))
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


@router.get("/api/grid", dependencies=READ)
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


@router.get("/api/runs", dependencies=READ)
def runs(
    request: Request,
    job: str | None = None,
    state: list[str] | None = Query(None, description="one or more run states"),
    partition: str | None = None,
    partition_from: str | None = None,
    partition_to: str | None = None,
    since: float | None = Query(None, allow_inf_nan=False, description="created at or after (unix seconds)"),
    until: float | None = Query(None, allow_inf_nan=False, description="created before (unix seconds)"),
    offset: int = Query(0, ge=0, le=MAX_PAGE),
    limit: int = Query(50, ge=1, le=1000),
) -> dict[str, Any]:
    from coordinator.lease import run_lease
    from coordinator.store import leases as L

    _, spec, store = _ctx(request)
    states = [s for s in state or [] if s]
    unknown = [s for s in states if s not in runview.RUN_STATES]
    if unknown:
        detail = f"{unknown[0]!r}: one of {', '.join(runview.RUN_STATES)}"
        raise HTTPException(422, detail={"reason": "unknown_state", "detail": detail})
    if job and job not in spec.jobs:
        raise HTTPException(404, detail={"reason": "unknown_job", "detail": job})
    if partition is not None:
        partition_from = partition_to = partition
    with store.begin() as tx:
        rows, total = tx.runs_page(
            job=job,
            states=states,
            partition_from=partition_from,
            partition_to=partition_to,
            since=since,
            until=until,
            offset=offset,
            limit=limit,
        )
        superseded = tx.superseding(rows)
        leases = L.every(tx)
    now = time.time()
    masker = _masker(request)
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "runs": [
            {**_run_json(r, masker, superseded.get(r.run_id)), "lease": run_lease(r.owner, leases, now)}
            for r in rows
        ],
    }


@router.get("/api/streams", dependencies=READ)
def streams(request: Request) -> dict[str, Any]:
    from coordinator.launchers.stream import stream_jobs, stream_status

    settings, spec, _ = _ctx(request)
    return {"streams": [stream_status(settings.home, job) for job in stream_jobs(spec)]}


@router.get("/api/audit")
def audit_log(
    request: Request, limit: int = Query(200, ge=1, le=5000), _: Principal = Depends(require("admin"))
) -> dict[str, Any]:
    _, _, store = _ctx(request)
    with store.begin() as tx:
        rows = audit.recent(tx, limit)
    return {"audit": [r.as_json() for r in rows]}


@router.get("/api/runs/{run_id}", dependencies=READ)
def run_detail(request: Request, run_id: str, lines: int = Query(60, ge=1, le=2000)) -> dict[str, Any]:
    settings, spec, store = _ctx(request)
    with store.begin() as tx:
        run = tx.get_run(run_id)
        if run is None:
            raise HTTPException(404, detail={"reason": "unknown_run", "detail": run_id})
        attempts = tx.attempts(run_id)
        outputs = runview.outputs_json(tx, spec, run)
        inputs = runview.inputs_json(tx, run)
        superseded_by = tx.superseding([run]).get(run.run_id)
        step = runview.next_step(tx, run, superseded_by)
        cause = history.root_cause(tx, spec, run.job, run.partition) if run.state != "succeeded" else None
        actions = audit.for_run(tx, run.run_id, run.job, run.partition)
    log_path = history.attempt_log(run, attempts[-1], settings.home) if attempts else None
    masker = _masker(request)
    return {
        **_run_json(run, masker, superseded_by),
        "command": masker.argv(history.launched_command(run)),
        "inputs": masker.value(inputs),  # a location may carry credentials
        "attempts": [masker.value(a) for a in attempts],
        "outputs": [{**o, "error": masker.text(o["error"])} for o in outputs],
        "next": step,
        "root_cause": _run_json(cause, masker) if cause else None,
        "log": masker.text(history.log_tail(log_path, lines)) if log_path else "",
        "audit": [r.as_json() for r in actions],
    }


# ---------------------------------------------------------------------- actions
@router.post("/api/runs/{run_id}/retry")
def retry(request: Request, run_id: str, who: Principal = Depends(require("operate"))) -> dict[str, Any]:
    _, _, store = _ctx(request)
    try:
        run = operations.retry(store, run_id)
    except CoordinatorError as exc:
        raise HTTPException(409, detail={"reason": "cannot_retry", "detail": str(exc)}) from None
    audit.record(store, who.name, "retry", run_id=run.run_id, job=run.job, partition=run.partition)
    return _run_json(run, _masker(request))


@router.post("/api/runs/{run_id}/cancel")
def cancel(request: Request, run_id: str, who: Principal = Depends(require("operate"))) -> dict[str, Any]:
    import socket

    from coordinator.launchers.registry import build_launcher

    settings, _, store = _ctx(request)
    try:
        run = operations.cancel(
            store, run_id, lambda kind: build_launcher(kind, settings), socket.gethostname()
        )
    except CoordinatorError as exc:
        raise HTTPException(409, detail={"reason": "cannot_cancel", "detail": str(exc)}) from None
    audit.record(store, who.name, "cancel", run_id=run.run_id, job=run.job, partition=run.partition)
    return _run_json(run, _masker(request))


@router.post("/api/jobs/{job}/rerun")
def rerun(
    request: Request, job: str, partition: str | None = None, who: Principal = Depends(require("operate"))
) -> dict[str, Any]:
    _, spec, store = _ctx(request)
    if job not in spec.jobs:
        raise HTTPException(404, detail={"reason": "unknown_job", "detail": job})
    try:
        result = operations.rerun(store, spec, job, partition)
    except EventError as exc:  # no key of the job's partitioning (operations.partition_problem)
        raise HTTPException(422, detail={"reason": exc.reason, "detail": exc.detail}) from None
    if result.waiting:
        _, missing = result.waiting[0]
        raise HTTPException(409, detail={"reason": "waiting", "detail": f"waiting for {', '.join(missing)}"})
    for r in result.created:
        audit.record(store, who.name, "rerun", run_id=r.run_id, job=job, partition=r.partition)
    masker = _masker(request)
    return {"created": [_run_json(r, masker) for r in result.created]}
