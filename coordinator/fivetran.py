"""What a Fivetran sync_end means: the connector mapping, its partition rule, and the events. Pure.

A Fivetran webhook says "connector C finished a sync at time T"; it names no dataset and no
partition. The mapping (setting `fivetran_connectors`, one entry per connector id) says which
datasets a sync of that connector completes and which partition the delivered data belongs to:

    {"app_db": {"datasets": ["fivetran.app.users", "fivetran.app.orders"],
                "partition": "daily", "from": "created", "offset": "-1d", "timezone": "UTC"}}

- `partition`: `daily` (key YYYY-MM-DD), `hourly` (YYYY-MM-DDTHH) or `none` (unpartitioned).
- `from`: the payload's timestamp field the key is computed from (`created`, Fivetran's time of
  the event, by default; `data.NAME` for a field inside `data`).
- `offset`: added to that time before the key is taken — by default `-1d` for daily (a sync
  that ends on the 2nd delivers the 1st's data) and `-1h` for hourly; `0d` for the same day.
  Days move the calendar day in `timezone`; hours and minutes move the instant.
- `timezone`: the IANA zone whose calendar the key follows (default UTC).

A bare list (`{"app_db": ["fivetran.app.users"]}`) is the same as `partition: none`. A rule
is checked when the settings are built (an unknown key, a bad offset or zone is an error naming
the connector and the field), and against the spec at start (`problems_against_spec`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coordinator.errors import EventError
from coordinator.events import CompletionEvent, Status, derived_event_id, parse_time
from coordinator.timezones import ZoneName

if TYPE_CHECKING:
    from coordinator.spec.models import PipelineSpec

PRODUCER = "fivetran"
_OFFSET = re.compile(r"^([+-]?)(\d{1,4})([dhm])$")
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_DEFAULT_OFFSET = {"daily": "-1d", "hourly": "-1h"}


class FivetranPayload(BaseModel):
    """The fields of a Fivetran webhook payload read here. Fivetran adds fields over time; the
    others are not ours to refuse."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event: str
    connector_id: str
    created: str | None = None  # ISO 8601, but Fivetran's creation ping sends the word "timestamp"
    connector_type: str | None = None
    connector_name: str | None = None
    sync_id: str | None = None
    destination_group_id: str | None = None
    data: dict[str, Any] = {}

    @field_validator("data", mode="before")
    @classmethod
    def _no_data(cls, data: Any) -> Any:
        return {} if data is None else data  # some event types send "data": null


class ConnectorRule(BaseModel):
    """The datasets one connector's sync completes, and the partition its data belongs to."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    datasets: tuple[str, ...] = Field(min_length=1)
    partition: Literal["daily", "hourly", "none"]
    from_: str = Field(default="created", alias="from")
    offset: str | None = None
    timezone: ZoneName = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return {"datasets": value, "partition": "none"}
        return value

    @field_validator("datasets")
    @classmethod
    def _named(cls, datasets: tuple[str, ...]) -> tuple[str, ...]:
        if any(not d.strip() for d in datasets):
            raise ValueError("a dataset name is empty")
        return datasets

    @field_validator("from_")
    @classmethod
    def _path(cls, path: str) -> str:
        if not _FIELD_PATH.match(path):
            raise ValueError(f"{path!r} is not a payload field (like created or data.sync_end)")
        return path

    @field_validator("offset")
    @classmethod
    def _offset(cls, offset: str | None) -> str | None:
        if offset is not None and not _OFFSET.match(offset):
            raise ValueError(f"{offset!r} is not an offset (like -1d, 0d, -2h, 30m)")
        return offset

    @model_validator(mode="after")
    def _fits_partition(self) -> ConnectorRule:
        if self.partition == "none":
            given = sorted(self.model_fields_set & {"from_", "offset", "timezone"})
            if given:
                names = ", ".join("from" if n == "from_" else n for n in given)
                raise ValueError(f"{names}: no meaning with partition none (give partition daily or hourly)")
        elif self.offset and self.partition == "daily" and not self.offset.endswith("d"):
            raise ValueError(f"offset {self.offset!r}: a daily partition moves by whole days (like -1d)")
        return self

    def _shift(self) -> tuple[timedelta, bool]:
        """The offset as a timedelta, and whether it moves calendar days (else the instant)."""
        match = _OFFSET.match(self.offset or _DEFAULT_OFFSET.get(self.partition, "0d"))
        assert match is not None  # checked by the validator
        sign, amount, unit = match.groups()
        n = -int(amount) if sign == "-" else int(amount)
        delta = {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]
        return delta, unit == "d"

    def partition_key(self, payload: Mapping[str, Any]) -> str | None:
        """The key of the partition a sync in `payload` (the raw JSON object) delivered.

        Raises EventError("bad_partition") when the `from` field is missing or not a time.
        """
        if self.partition == "none":
            return None
        from coordinator.spec import partitions as P  # lazily: the settings import this module

        value: Any = payload
        for part in self.from_.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        when = parse_time(value) if isinstance(value, str) else None
        if when is None:
            raise EventError(
                "bad_partition", f"payload field {self.from_!r} is {value!r}, not an ISO 8601 time"
            )
        delta, calendar = self._shift()
        zone = ZoneInfo(self.timezone)
        # Calendar days move the wall-clock date in the zone; hours and minutes move the instant.
        try:
            local = when.astimezone(zone) + delta if calendar else (when + delta).astimezone(zone)
        except OverflowError:  # moved before year 1 or past 9999: no key names such a partition
            raise EventError(
                "bad_partition", f"payload field {self.from_!r} is {value!r}, out of range with offset"
            ) from None
        return local.strftime(P.DAILY_FORMAT if self.partition == "daily" else P.HOURLY_FORMAT)


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


def completion_events(
    payload: FivetranPayload, rule: ConnectorRule, raw: Mapping[str, Any]
) -> list[CompletionEvent]:
    """One event per dataset of `rule` for a finished sync (none for any other payload).

    Raises EventError("bad_partition") when the rule's timestamp field is unusable.
    """
    status = sync_status(payload)
    if status is None:
        return []
    partition = rule.partition_key(raw)
    created = parse_time(payload.created)
    run = payload.sync_id or payload.created
    # Fivetran retries deliveries: the same sync must give the same event ids, even from a payload
    # with neither a sync id nor a time (the same delivery is the same body)
    identity = run or "body-" + hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:24]
    attributes = {
        k: v
        for k, v in {
            "connector_id": payload.connector_id,
            "connector_name": payload.connector_name,
            "connector_type": payload.connector_type,
            "destination_group_id": payload.destination_group_id,
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
    for dataset in rule.datasets:
        fields: dict[str, Any] = dict(
            dataset=dataset,
            partition=partition,
            status=status,
            producer=PRODUCER,
            producer_run_id=run[:500] if run else None,
            error=error[:20000] if error else None,
            attributes=dict(attributes),
        )
        fields["event_id"] = derived_event_id(PRODUCER, payload.connector_id, identity, dataset)
        if created:
            fields["produced_at"] = created
        try:
            events.append(CompletionEvent(**fields))
        except ValidationError as exc:
            raise EventError("invalid", f"{dataset}: {exc}"[:500]) from None
    return events


def problems_against_spec(connectors: Mapping[str, ConnectorRule], spec: PipelineSpec) -> list[str]:
    """Why the mapping cannot feed `spec`: a dataset the spec does not know, or
    a rule whose partition does not fit the dataset's partitioning. Empty when it fits."""
    from coordinator.admission import UNKNOWN_DATASET, admission_problem
    from coordinator.spec import partitions as P

    example = {"daily": "2024-01-31", "hourly": "2024-01-31T05", "none": None}
    problems = []
    for connector, rule in connectors.items():
        for dataset in rule.datasets:
            problem = admission_problem(spec, dataset, example[rule.partition])
            if problem is None:
                continue
            if problem.reason == UNKNOWN_DATASET:
                problems.append(f"{connector}.datasets: {dataset!r} is not in the spec")
            else:
                declared = P.describe(spec.partitioning(dataset))
                problems.append(
                    f"{connector}.partition: {rule.partition} does not fit "
                    f"{dataset!r}, which the spec partitions {declared}"
                )
    return problems
