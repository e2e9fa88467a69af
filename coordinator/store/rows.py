"""What the store's rows are read as and written from: `RunRow`, `Finish`, partition versions.

Also the store's key conventions: a partition is stored as '' when there is none (`pkey`,
`unkey`), a run's id is a hash of what makes it unique (`run_id_for`), and the run states the
claims and views ask for are module constants, inlined as literals by `states` so prepared
plans still use the partial indexes on the state (schema.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import text

from coordinator.events import Column, CompletionEvent
from coordinator.handles import Handle
from coordinator.readiness import Version, input_key

ACTIVE = ("starting", "running")
OPEN = ("ready", "starting", "running")
DEAD = ("failed", "blocked", "cancelled")  # ended without success: `coord retry` revives them


def dumps(value: object, default=None) -> str:
    """JSON text for the store's text columns (orjson: these run once per event and run)."""
    return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS).decode()


loads = orjson.loads


def pkey(partition: str | None) -> str:
    return partition or ""


def unkey(partition_key: str) -> str | None:
    return partition_key or None


def run_id_for(job: str, partition: str | None, input_key: str, generation: int) -> str:
    raw = f"{job}\n{pkey(partition)}\n{input_key}\n{generation}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def in_states(names: Sequence[str], negate: bool = False):
    """`state [NOT] IN (...)` with the states as literals (they are the module's constants)."""
    listed = ", ".join(f"'{s}'" for s in names if s.isidentifier())
    return text(f"coord_runs.state {'NOT IN' if negate else 'IN'} ({listed})")


def version_dict(v: Version) -> list[object]:
    """A version as a run's `inputs` keep it (JSON): an array in `version_of`'s order, the Nones
    at its end left out — no key names, a run's row ~50 bytes smaller than as an object (and
    twice that in a store that has lived: an update leaves the old row behind until VACUUM)."""
    d: list[object] = [
        v.event_id,
        v.dataset,
        v.produced_at,
        v.partition,
        v.row_count,
        v.location,
        None if v.columns is None else [c.model_dump() for c in v.columns],
    ]
    while d[-1] is None:
        d.pop()
    return d


def version_of(d: list | dict) -> Version:
    """The inverse of `version_dict`; also reads the objects earlier builds stored (keyed by name,
    the Nones left out)."""
    if isinstance(d, dict):
        d = [d["event_id"], d["dataset"], d["produced_at"], d.get("partition"), d.get("row_count"),
             d.get("location"), d.get("columns")]  # fmt: skip
    else:
        d = d + [None] * (7 - len(d))
    event_id, dataset, produced_at, partition, row_count, location, cols = d
    columns = None if cols is None else tuple(Column(**c) for c in cols)
    return Version(event_id, dataset, partition, produced_at, row_count, location, columns)


def input_ids(inputs: str) -> list[str]:
    """The event ids of a run's stored `inputs` (either form `version_of` reads)."""
    return [d["event_id"] if isinstance(d, dict) else d[0] for d in loads(inputs)]


def event_body(e: CompletionEvent) -> str:
    """An event's `body` as the events table keeps it: what its columns (event id, dataset,
    partition, status, produced_at) do not hold already, and no field at its default — about 200
    bytes less per event than the whole event. `event_of` reads it back whole. A partition ''
    and a time not in UTC (or finer than a microsecond off the float) stay in the body, where
    the columns would not give them back as they were."""
    exclude = {"event_id", "dataset", "status"}
    if e.partition:
        exclude.add("partition")
    at = e.produced_at
    if at.utcoffset() == timedelta(0) and datetime.fromtimestamp(at.timestamp(), UTC) == at:
        exclude.add("produced_at")
    return e.model_dump_json(exclude_defaults=True, exclude=exclude)


# the columns an event is read from, in `event_of`'s order
EVENT_COLUMNS = ("event_id", "dataset", "partition_key", "status", "produced_at", "body")


def event_of(row: Sequence) -> CompletionEvent:
    """The event stored as `EVENT_COLUMNS` (a body of `event_body`, or the whole event as earlier
    builds stored it: what the body holds wins over the columns)."""
    event_id, dataset, partition_key, status, produced_at, body = row
    d = loads(body)
    d.setdefault("event_id", event_id)
    d.setdefault("dataset", dataset)
    d.setdefault("status", status)
    if partition_key and "partition" not in d:
        d["partition"] = partition_key
    if "produced_at" not in d:
        d["produced_at"] = datetime.fromtimestamp(produced_at, UTC)
    return CompletionEvent.model_validate(d)


def columns_of(text_: str | None) -> tuple[Column, ...] | None:
    """A partition version's stored `columns` (JSON text, or nothing)."""
    return None if not text_ else tuple(Column(**c) for c in loads(text_))


def handle_json(handle: Handle) -> str:
    return dumps({"kind": handle.kind, "data": dict(handle.data)})


@dataclass(frozen=True)
class RunRow:
    run_id: str
    job: str
    partition: str | None
    input_key: str
    generation: int
    state: str
    pool: str
    attempt: int
    max_attempts: int
    budget: int
    inputs: tuple[Version, ...]
    handle: Handle | None
    error: str | None
    not_before: float
    owner: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def of(cls, row) -> RunRow:
        return cls.from_dict(row._mapping)

    @classmethod
    def from_dict(cls, m, inputs: tuple[Version, ...] | None = None) -> RunRow:
        """`inputs`, when the caller has them decoded already (they are the row's largest field)."""
        handle = loads(m["handle"]) if m["handle"] else None
        if inputs is None:
            inputs = tuple(version_of(d) for d in loads(m["inputs"]))
        return cls(
            m["run_id"],
            m["job"],
            unkey(m["partition_key"]),
            # a hash of the inputs' event ids: stored by earlier builds only (runs.py)
            m["input_key"] or input_key(v.event_id for v in inputs),
            m["generation"],
            m["state"],
            m["pool"],
            m["attempt"],
            m["max_attempts"],
            m["budget"],
            inputs,
            Handle(handle["kind"], handle["data"]) if handle else None,
            m["error"],
            m["not_before"],
            m["owner"],
            m["created_at"],
            m["started_at"],
            m["finished_at"],
        )


@dataclass(frozen=True)
class Finish:
    """How one attempt ended (`Tx.finish_many`); `retry_at` sends the run back to `ready`."""

    run_id: str
    attempt: int
    state: str
    error: str | None = None
    log_path: str | None = None
    retry_at: float | None = None
    details: Mapping[str, object] | None = None
    handle: Handle | None = None  # an attempt that started and ended between two writes
