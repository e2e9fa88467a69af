"""The completion event: "dataset D, partition P, is complete (or failed)".

This model is the one shape every producer (CLI, SDK, HTTP, webhooks, dbt artifacts, the
coordinator itself) and every consumer agrees on; its Avro form lives in topics/.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The bus message header that carries the event id beside the encoded event (as CloudEvents'
# Kafka binding carries ce_id): a consumer can skip or route a message without decoding it.
EVENT_ID_HEADER = "event_id"


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _unicode(value: str) -> str:
    """`value`, if it can be written as UTF-8: a lone surrogate (JSON's "\\ud800" parses to one)
    cannot, and would fail the event's encoding or its store's write long after it was accepted."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not valid Unicode (a lone surrogate)") from None
    return value


class Column(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: str
    nullable: bool = True

    @field_validator("name", "type")
    @classmethod
    def _valid_unicode(cls, value: str) -> str:
        return _unicode(value)


# The fields a store keeps in columns of their own (the rest travels in the event's JSON body):
# text there cannot hold a NUL character (PostgreSQL refuses it), so an event carrying one in
# them is refused as it is decoded, like any other invalid event, and never reaches the store.
KEY_FIELDS = ("event_id", "dataset", "partition", "producer", "producer_run_id")


def nul_problem(values: dict) -> str | None:
    """Which key field of an event's `values` holds a NUL character, said as its refusal."""
    for name in KEY_FIELDS:
        value = values.get(name)
        if value is not None and "\x00" in value:
            return f"{name} contains a NUL character"
    return None


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
    # an Avro long, and the stores' BIGINT: a count beyond it could be accepted but never written
    row_count: int | None = Field(default=None, ge=0, le=2**63 - 1)
    location: str | None = Field(default=None, max_length=4000)
    columns: tuple[Column, ...] | None = None
    error: str | None = Field(default=None, max_length=20000)
    attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator(*KEY_FIELDS)
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value

    @field_validator(*KEY_FIELDS, "location", "error")
    @classmethod
    def _valid_unicode(cls, value: str | None) -> str | None:
        return value if value is None else _unicode(value)

    @field_validator("row_count", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):  # an int to Python, but a JSON `true` is no count of 1
            raise ValueError("a count, not a boolean")
        return value

    @field_validator("attributes")
    @classmethod
    def _valid_attributes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            _unicode(name)
            _unicode(text)
        return value

    @property
    def succeeded(self) -> bool:
        return self.status is Status.SUCCEEDED
