"""Fivetran's webhook: its payload, its signature, and the completion events a sync_end means.

Fivetran signs the raw body with the webhook's secret (HMAC-SHA256, hex in the
X-Fivetran-Signature-256 header). A `sync_end` names a connector; the settings say which
datasets that connector loads (`fivetran_connectors`), and each gets one event, succeeded or
failed by the payload's status. Other events (sync_start, the creation test ping) mean no
completion and give none.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from coordinator.events import CompletionEvent, Status, parse_time

SIGNATURE_HEADER = "X-Fivetran-Signature-256"


class FivetranPayload(BaseModel):
    # Fivetran adds fields to its payloads over time; the ones not read here are not ours to refuse.
    model_config = ConfigDict(extra="ignore", frozen=True)

    event: str
    connector_id: str
    created: str | None = None  # ISO 8601, but Fivetran's creation ping sends the word "timestamp"
    connector_type: str | None = None
    connector_name: str | None = None
    sync_id: str | None = None
    destination_group_id: str | None = None
    data: dict[str, Any] = {}


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the hex HMAC-SHA256 of `body` under `secret` (either case)."""
    if not header:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.strip().lower())


def sync_status(payload: FivetranPayload) -> Status | None:
    """succeeded/failed for a finished sync; None when the payload is not one (or was rescheduled)."""
    if payload.event != "sync_end":
        return None
    status = str(payload.data.get("status", "")).upper()
    if status in ("SUCCESSFUL", "SUCCESS", "SUCCEEDED"):
        return Status.SUCCEEDED
    if status.startswith("FAIL"):
        return Status.FAILED
    return None


def completion_events(payload: FivetranPayload, datasets: Sequence[str]) -> list[CompletionEvent]:
    status = sync_status(payload)
    if status is None:
        return []
    created = parse_time(payload.created)
    run = payload.sync_id or payload.created
    attributes: Mapping[str, str] = {
        k: v
        for k, v in {
            "connector_id": payload.connector_id,
            "connector_type": payload.connector_type,
            "fivetran_status": str(payload.data.get("status", "")),
        }.items()
        if v
    }
    error = None
    if status is Status.FAILED:
        error = str(
            payload.data.get("reason")
            or payload.data.get("message")
            or f"Fivetran sync ended with status {payload.data.get('status')}"
        )
    events = []
    for dataset in datasets:
        fields: dict[str, Any] = dict(
            dataset=dataset,
            status=status,
            producer="fivetran",
            producer_run_id=run,
            error=error,
            attributes=dict(attributes),
        )
        if run:  # Fivetran retries deliveries: the same sync must give the same event ids
            fields["event_id"] = f"fivetran:{payload.connector_id}:{run}:{dataset}"
        if created:
            fields["produced_at"] = created
        events.append(CompletionEvent(**fields))
    return events
