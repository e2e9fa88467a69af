"""The completion event: "dataset D, partition P, is complete (or failed)".

This model is the one shape every producer (CLI, SDK, HTTP, webhooks, dbt artifacts, the
coordinator itself) and every consumer agrees on; its Avro form lives in topics/.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# The bus message header that carries the event id beside the encoded event (as CloudEvents'
# Kafka binding carries ce_id): a consumer can skip or route a message without decoding it.
EVENT_ID_HEADER = "event_id"


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Column(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: str
    nullable: bool = True


def _new_event_id() -> str:
    return uuid.uuid4().hex


def derived_event_id(*parts: str) -> str:
    """An event id made from the producer's own identity of the event (a sync, a dbt node of an
    invocation), so a retried delivery gives the same id; hashed when it would pass the id's limit."""
    plain = ":".join(parts)
    return plain if len(plain) <= 200 else f"{parts[0]}:{hashlib.sha256(plain.encode()).hexdigest()}"


def _now() -> datetime:
    return datetime.now(UTC)


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time from a producer's payload (Fivetran, dbt artifacts), always zoned (UTC
    when it has no offset); None when missing or unreadable, so the caller picks its fallback."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class CompletionEvent(BaseModel):
    """One dataset partition finished (or failed) in some producing system.

    `event_id` is the identity used for de-duplication: publishing the same event twice is
    harmless. `partition` is None for unpartitioned datasets.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=_new_event_id, min_length=1, max_length=200)
    dataset: str = Field(min_length=1, max_length=500)
    partition: str | None = Field(default=None, max_length=200)
    status: Status = Status.SUCCEEDED
    producer: str = Field(default="unknown", max_length=200)
    producer_run_id: str | None = Field(default=None, max_length=500)
    produced_at: datetime = Field(default_factory=_now)
    row_count: int | None = Field(default=None, ge=0)
    location: str | None = Field(default=None, max_length=4000)
    columns: tuple[Column, ...] | None = None
    error: str | None = Field(default=None, max_length=20000)
    attributes: dict[str, str] = Field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status is Status.SUCCEEDED
