"""POST /webhooks/fivetran: Fivetran's signed webhook, turned into completion events.

Fivetran signs the raw body with the webhook's secret (HMAC-SHA256, hex in the
X-Fivetran-Signature-256 header). A `sync_end` of a mapped connector becomes one event per
dataset of its rule (coordinator/fivetran.py), in the partition the rule computes.

Fivetran retries a delivery that does not get a 2xx for 24 hours, then disables the webhook —
for every connector it serves. So the replies are chosen by whether a retry can help:
- 202 with event ids: the events are durable — in the state store and its outbox when an engine
  runs in this process (coordinator/handover.py), else on the bus (a retried delivery gives the
  same ids);
- 202 with `ignored`: nothing to do here, for good — another event type (sync_start, the
  creation ping), a rescheduled sync, or a connector the mapping does not name (an account-wide
  webhook serves every connector). Counted in `coord_webhooks_ignored_total{source,reason}`;
- 401 bad_signature, 413 oversized, 422 undecodable: not from Fivetran, or broken;
- 422 bad_partition: a mapped connector whose rule cannot place this payload (its `from` field is
  missing or not a time) — a mapping to fix, and Fivetran's retries deliver it once it is fixed;
- 503 not_configured / bus_unavailable: a retry later may succeed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from coordinator.api.events import _body, _publish_all, _refuse
from coordinator.errors import EventError, SettingsError
from coordinator.fivetran import FivetranPayload, completion_events, problems_against_spec, sync_status
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec

SIGNATURE_HEADER = "X-Fivetran-Signature-256"

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the hex HMAC-SHA256 of `body` under `secret` (either case)."""
    if not header:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # as bytes: compare_digest refuses a str with non-ASCII characters (TypeError), and a header
    # is the sender's to fill with anything; such a one is simply not the signature
    given = header.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(expected.encode(), given)


def check_mapping(settings: Settings, spec: PipelineSpec) -> None:
    """At start: SettingsError naming each connector and field whose rule cannot feed `spec`
    (a line each)."""
    problems = problems_against_spec(settings.fivetran_connectors, spec)
    if problems:
        raise SettingsError("\n".join(f"COORD_FIVETRAN_CONNECTORS: {p}" for p in problems))


def _ignored(request: Request, reason: str, detail: str) -> dict[str, Any]:
    metrics = request.app.state.metrics
    if metrics is not None:
        metrics.webhooks_ignored.labels("fivetran", reason).inc()
    log.info("Fivetran webhook ignored (%s): %s", reason, detail)
    return {"event_ids": [], "ignored": reason, "detail": detail}


@router.post("/webhooks/fivetran", status_code=202)
async def fivetran_webhook(request: Request) -> dict[str, Any]:
    """A Fivetran webhook delivery; a signed sync_end of a mapped connector becomes its events."""
    settings: Settings = request.app.state.settings
    if settings.webhook_secret is None:
        raise _refuse(503, "not_configured", "set COORD_WEBHOOK_SECRET to accept Fivetran webhooks")
    body = await _body(request, settings)
    secret = settings.webhook_secret.get_secret_value()
    if not signature_ok(secret, body, request.headers.get(SIGNATURE_HEADER)):
        raise _refuse(401, "bad_signature", f"{SIGNATURE_HEADER} missing or wrong")
    try:
        raw = json.loads(body)
        payload = FivetranPayload.model_validate(raw)
    except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
        raise _refuse(422, "undecodable", str(exc)[:500]) from None
    except RecursionError:  # nested deeper than the parser recurses: not Fivetran's
        raise _refuse(422, "undecodable", "not JSON: nested too deeply") from None
    if sync_status(payload) is None:
        what = f"{payload.event} {payload.data.get('status', '')}".strip()
        return _ignored(request, "not_a_completion", f"{what} of {payload.connector_id}")
    rule = settings.fivetran_connectors.get(payload.connector_id)
    if rule is None:
        name = f" ({payload.connector_name})" if payload.connector_name else ""
        detail = f"no rule in COORD_FIVETRAN_CONNECTORS for {payload.connector_id}{name}"
        return _ignored(request, "unknown_connector", detail)
    try:
        events = completion_events(payload, rule, raw)
    except EventError as exc:
        raise _refuse(422, exc.reason, f"connector {payload.connector_id}: {exc.detail}") from None
    published = await _publish_all(request, events, "fivetran-webhook")  # the audit's actor: the signature
    return published | {"partition": events[0].partition}
