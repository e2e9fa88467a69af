"""POST /events (a completion event as JSON, behind a `publish` token); its helpers serve api/fivetran.py.

Every refusal has a clear status and a `reason`: 401 unauthenticated / bad_signature, 403
forbidden (the token lacks `publish`, or may not publish that dataset or as that producer:
coordinator/auth.py), 413
oversized, 422 undecodable / missing_field / wrong_type / invalid, and — when the app has the
spec — unknown_dataset / bad_partition (coordinator/admission.py, the intake's own check), 503
when the endpoint is not configured or the bus cannot take the event. A 202 means the events
are durable on the bus.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from coordinator.admission import admission_problem
from coordinator.auth import Principal, require
from coordinator.codec import event_from_json
from coordinator.errors import BusError, EventError
from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.settings import Settings

router = APIRouter(tags=["events"])


def _refuse(status: int, reason: str, detail: str = "") -> HTTPException:
    return HTTPException(status, detail={"reason": reason, "detail": detail})


async def _body(request: Request, settings: Settings) -> bytes:
    body = await request.body()
    if len(body) > settings.max_event_bytes:
        raise _refuse(413, "oversized", f"{len(body)} bytes > {settings.max_event_bytes}")
    return body


def _publish(publisher: Publisher, events: list[CompletionEvent]) -> None:
    publisher.publish_many(events)
    publisher.flush()


async def _publish_all(request: Request, events: list[CompletionEvent], actor: str) -> dict[str, Any]:
    """Publish, and audit each event as published by `actor` (a token's name, or the webhook).

    On PostgreSQL the audit's rows are written while the events travel to the bus and committed
    once the bus has them (rolled back if it refused them): its transaction then leaves the
    database and the interpreter to the engine, which starts the events' runs at about that
    moment, instead of competing with the first transaction of their launch (2 ms of it,
    bench/launch.py). On SQLite, whose write lock is the whole file's, the audit is written after
    the publish, so that an open audit never holds the engine up for as long as the bus takes."""
    store = getattr(request.app.state, "store", None)  # an events-only app has no audit
    published: Future[bool] = Future()
    audited = None
    if store is not None and not store.url.startswith("sqlite"):
        pool = request.app.state.audit_pool
        audited = asyncio.wrap_future(pool.submit(_audit, store, actor, events, published))
    try:
        await run_in_threadpool(_publish, request.app.state.publisher, events)
    except BusError as exc:
        refusal = _refuse(503, "bus_unavailable", str(exc))
    except EventError as exc:
        refusal = _refuse(422, exc.reason, exc.detail)
    except BaseException:
        published.set_result(False)
        raise
    else:
        refusal = None
    published.set_result(refusal is None)
    if audited is not None:
        await audited
    elif store is not None and refusal is None:
        await run_in_threadpool(_audit, store, actor, events, published)
    if refusal is not None:
        raise refusal
    return {"event_ids": [e.event_id for e in events]}


class _NotPublished(Exception):
    """The bus refused the events: their audit rows are rolled back."""


def _audit(store: Any, actor: str, events: list[CompletionEvent], published: Future[bool]) -> None:
    from coordinator.store import audit

    try:
        with store.begin() as tx:
            for e in events:
                detail = f"event {e.event_id} ({e.status.value}) as {e.producer}"
                audit.add(tx, actor, "publish", job=e.dataset, partition=e.partition, detail=detail)
            if not published.result():
                raise _NotPublished
    except _NotPublished:
        pass


@router.post("/events", status_code=202)
async def post_event(request: Request, principal: Principal = Depends(require("publish"))) -> dict[str, Any]:
    """Publish one completion event given as JSON (the CompletionEvent fields)."""
    settings: Settings = request.app.state.settings
    body = await _body(request, settings)
    try:
        event = event_from_json(body)
    except EventError as exc:
        raise _refuse(422, exc.reason, exc.detail) from None
    refused = principal.may_publish(event.dataset, event.producer)
    if refused is not None:
        raise _refuse(403, "forbidden", refused)
    spec = getattr(request.app.state, "spec", None)
    if spec is not None:
        problem = admission_problem(spec, event.dataset, event.partition)
        if problem is not None:
            raise _refuse(422, problem.reason, problem.detail)
    return await _publish_all(request, [event], principal.name)
