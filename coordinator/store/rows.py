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

import orjson
from sqlalchemy import text

from coordinator.events import Column
from coordinator.handles import Handle
from coordinator.readiness import Version

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


def version_dict(v: Version) -> dict[str, object]:
    """A version as a run's `inputs` keep it (JSON); what is None is left out (`version_of` reads
    it as None), a run's row is a sixth smaller for it."""
    d: dict[str, object] = {"event_id": v.event_id, "dataset": v.dataset, "produced_at": v.produced_at}
    if v.partition is not None:
        d["partition"] = v.partition
    if v.row_count is not None:
        d["row_count"] = v.row_count
    if v.location is not None:
        d["location"] = v.location
    if v.columns is not None:
        d["columns"] = [c.model_dump() for c in v.columns]
    return d


def version_of(d: dict) -> Version:
    """The inverse of `version_dict`."""
    cols = d.get("columns")
    return Version(
        d["event_id"],
        d["dataset"],
        d.get("partition"),
        d["produced_at"],
        d.get("row_count"),
        d.get("location"),
        None if cols is None else tuple(Column(**c) for c in cols),
    )


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
        return cls(
            m["run_id"],
            m["job"],
            unkey(m["partition_key"]),
            m["input_key"],
            m["generation"],
            m["state"],
            m["pool"],
            m["attempt"],
            m["max_attempts"],
            m["budget"],
            inputs if inputs is not None else tuple(version_of(d) for d in loads(m["inputs"])),
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
