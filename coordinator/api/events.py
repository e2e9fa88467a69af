"""POST /events (a completion event as JSON, behind a bearer token) and POST /webhooks/fivetran.

Every refusal has a clear status and a `reason`: 401 unauthenticated / bad_signature, 413
oversized, 422 undecodable / missing_field / wrong_type / invalid, 404 unknown_connector, 503
when the endpoint is not configured or the bus cannot take the event. A 202 means the events
are durable on the bus.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from coordinator.api.fivetran import (
    SIGNATURE_HEADER,
    FivetranPayload,
    completion_events,
    signature_ok,
    sync_status,
)
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


async def _publish_all(request: Request, events: list[CompletionEvent]) -> dict[str, Any]:
    try:
        await run_in_threadpool(_publish, request.app.state.publisher, events)
    except BusError as exc:
        raise _refuse(503, "bus_unavailable", str(exc)) from None
    except EventError as exc:
        raise _refuse(422, exc.reason, exc.detail) from None
    return {"event_ids": [e.event_id for e in events]}


@router.post("/events", status_code=202)
async def post_event(request: Request, authorization: str | None = Header(default=None)) -> dict[str, Any]:
    """Publish one completion event given as JSON (the CompletionEvent fields)."""
    settings: Settings = request.app.state.settings
    if settings.api_token is None:
        raise _refuse(503, "not_configured", "set COORD_API_TOKEN to accept events over HTTP")
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.api_token.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise HTTPException(
            401,
            detail={"reason": "unauthenticated", "detail": "bearer token required"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    body = await _body(request, settings)
    try:
        event = event_from_json(body)
    except EventError as exc:
        raise _refuse(422, exc.reason, exc.detail) from None
    return await _publish_all(request, [event])


@router.post("/webhooks/fivetran", status_code=202)
async def fivetran_webhook(request: Request) -> dict[str, Any]:
    """A Fivetran webhook delivery; a signed sync_end becomes one event per configured dataset."""
    settings: Settings = request.app.state.settings
    if settings.webhook_secret is None:
        raise _refuse(503, "not_configured", "set COORD_WEBHOOK_SECRET to accept Fivetran webhooks")
    body = await _body(request, settings)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature_ok(settings.webhook_secret.get_secret_value(), body, signature):
        raise _refuse(401, "bad_signature", f"{SIGNATURE_HEADER} missing or wrong")
    try:
        payload = FivetranPayload.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
        raise _refuse(422, "undecodable", str(exc)[:500]) from None
    if sync_status(payload) is None:
        return {"event_ids": [], "ignored": f"{payload.event} {payload.data.get('status', '')}".strip()}
    datasets = settings.fivetran_connectors.get(payload.connector_id)
    if not datasets:
        raise _refuse(404, "unknown_connector", f"no datasets configured for {payload.connector_id}")
    return await _publish_all(request, completion_events(payload, datasets))
