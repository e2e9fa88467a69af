"""POST /events (a completion event as JSON, behind a `publish` token); its helpers serve api/fivetran.py.

Every refusal has a clear status and a `reason`: 401 unauthenticated / bad_signature, 403
forbidden (the token lacks `publish`, or may not publish that dataset or as that producer:
coordinator/auth.py), 413 oversized (the body, as soon as it passes max_event_bytes, or an
event as encoded for the bus), 422 undecodable / missing_field / wrong_type / invalid, and —
when the app has the spec — unknown_dataset / bad_partition (coordinator/admission.py, the
intake's own check), 503 when the endpoint is not configured or the bus cannot take the event.
A 202 means the events are durable: in the state store and its outbox when this process runs an
engine (handed to its next transaction, coordinator/handover.py, which the outbox then
publishes), else on the bus.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from coordinator.admission import admission_problem
from coordinator.auth import Principal, require
from coordinator.codec import event_from_json
from coordinator.errors import BusError, EventError
from coordinator.events import CompletionEvent
from coordinator.handover import HANDOVER_S, AuditEntry, Handover, write_audits
from coordinator.publish import Publisher
from coordinator.settings import Settings

router = APIRouter(tags=["events"])


def _refuse(status: int, reason: str, detail: str = "") -> HTTPException:
    return HTTPException(status, detail={"reason": reason, "detail": detail})


async def _body(request: Request, settings: Settings) -> bytes:
    """The raw body, refused (413) before it is read when Content-Length is over the limit, and
    as soon as what a chunked body has sent is: never the whole of a huge body in memory."""
    limit = settings.max_event_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _refuse(413, "oversized", f"{declared} bytes > {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _refuse(413, "oversized", f"over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_encodable(publisher: Publisher, events: list[CompletionEvent]) -> None:
    """Each event as the bus gets it, encoded once here: its Avro form carries what the body did
    not (a generated event id, produced_at), so a body under the limit can still give an event
    over it, which no relay of the outbox could ever send. 413 oversized, 422 otherwise."""
    for event in events:
        try:
            publisher.codec.encode(event)
        except EventError as exc:
            raise _refuse(413 if exc.reason == "oversized" else 422, exc.reason, exc.detail) from None


def _publish(publisher: Publisher, events: list[CompletionEvent]) -> None:
    publisher.publish_many(events)
    publisher.flush()


async def _publish_all(request: Request, events: list[CompletionEvent], actor: str) -> dict[str, Any]:
    """Have the events recorded or published, and audited as published by `actor` (a token's
    name, or the webhook): by the engine of this process when there is one (handover.py), else
    here — published, then audited in a transaction of the request's own."""
    at = time.time()
    rows = [AuditEntry(actor, "publish", e.dataset, e.partition, _detail(e), at) for e in events]
    ok = {"event_ids": [e.event_id for e in events]}
    _check_encodable(request.app.state.publisher, events)
    store = getattr(request.app.state, "store", None)
    engine_handover = request.app.state.handover
    handover: Handover | None = engine_handover() if engine_handover is not None else None
    if store is not None and handover is not None and await _handed_over(handover, events, rows):
        return ok
    try:
        await run_in_threadpool(_publish, request.app.state.publisher, events)
    except BusError as exc:
        raise _refuse(503, "bus_unavailable", str(exc)) from None
    except EventError as exc:
        raise _refuse(422, exc.reason, exc.detail) from None
    if store is not None:  # the audit lives in the state store; an events-only app has none
        await run_in_threadpool(_write, store, rows)
    return ok


async def _handed_over(handover: Handover, events: list[CompletionEvent], rows: list[AuditEntry]) -> bool:
    """Whether the engine's transaction recorded the events and their audit (committed); False
    when it took nothing — not running, not in time — or its transaction failed."""
    handed = handover.put(events, rows)
    if handed is None:
        return False
    waited = asyncio.wrap_future(handed)
    try:
        try:
            await asyncio.wait_for(asyncio.shield(waited), HANDOVER_S)
        except TimeoutError:
            if handover.withdraw(handed):  # never in a transaction
                return False
            await waited  # taken meanwhile: that transaction decides
        return True
    except EventError as exc:  # the engine's admission refused one (an app built without the spec)
        raise _refuse(422, exc.reason, exc.detail) from None
    except Exception:  # the engine's transaction failed: it committed nothing
        return False


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
    except RecursionError:  # JSON nested deeper than the parser recurses: not an event
        raise _refuse(422, "undecodable", "not JSON: nested too deeply") from None
    refused = principal.may_publish(event.dataset, event.producer)
    if refused is not None:
        raise _refuse(403, "forbidden", refused)
    spec = getattr(request.app.state, "spec", None)
    if spec is not None:
        problem = admission_problem(spec, event.dataset, event.partition)
        if problem is not None:
            raise _refuse(422, problem.reason, problem.detail)
    return await _publish_all(request, [event], principal.name)
