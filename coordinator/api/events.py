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
import contextlib
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from coordinator.admission import admission_problem
from coordinator.audit_queue import HANDOVER_S, AuditEntry, AuditQueue, write_audits
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
    """Publish, then audit each event as published by `actor` (a token's name, or the webhook)."""
    try:
        await run_in_threadpool(_publish, request.app.state.publisher, events)
    except BusError as exc:
        raise _refuse(503, "bus_unavailable", str(exc)) from None
    except EventError as exc:
        raise _refuse(422, exc.reason, exc.detail) from None
    store = getattr(request.app.state, "store", None)
    if store is not None:  # the audit lives in the state store; an events-only app has none
        await _audit(request, store, actor, events)
    return {"event_ids": [e.event_id for e in events]}


async def _audit(request: Request, store: Any, actor: str, events: list[CompletionEvent]) -> None:
    """The audit rows, committed before the request answers: in the transaction of the engine of
    this process, which records these very events a moment later (coordinator/audit_queue.py),
    else — no engine here, or none took them in time — in a transaction of their own."""
    at = time.time()
    rows = [
        AuditEntry(actor, "publish", e.dataset, e.partition, _detail(e), at)
        for e in events
    ]
    engine_queue = request.app.state.audit_queue
    queue: AuditQueue | None = engine_queue() if engine_queue is not None else None
    if queue is not None:
        handed = queue.put(rows)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(handed)), HANDOVER_S)
            return
        except TimeoutError:
            if not queue.withdraw(handed):  # taken meanwhile: that transaction decides
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(handed)
                    return
        except Exception:  # the engine's transaction failed: written here instead
            pass
    await run_in_threadpool(_write, store, rows)


def _detail(event: CompletionEvent) -> str:
    return f"event {event.event_id} ({event.status.value}) as {event.producer}"


def _write(store: Any, rows: list[AuditEntry]) -> None:
    with store.begin() as tx:
        write_audits(tx, rows)


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
