"""The destination interface: describe the table, read the push marker, apply a plan atomically.

Failure contract: every method raises PushError (DestinationMismatch where it is about the
table's shape); driver exceptions never cross this edge (failure.py translates them, one line
each). `apply` either commits everything — rows, deletes and the marker — or nothing: on any
error the destination is as it was, except PushOutcomeUnknown (COMMIT sent, its answer lost),
after which it holds all of the push or none of it and the next push's marker tells which.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from coordinator.push.plan import Plan
from coordinator.push.schema import DestTable

MARKER_TABLE = "_coord_push_state"


@dataclass(frozen=True)
class Marker:
    """The destination's own record of the last push of a job, written in the push's transaction."""

    push_id: str
    fingerprint: str
    row_count: int  # given to apply: the count the push starts from, or -1 to count afresh

    def after(self, applied: Applied) -> int | None:
        """The table's row count after `applied`, when it follows from the start; else None."""
        return self.row_count + applied.inserted - applied.deleted if self.row_count >= 0 else None


@dataclass(frozen=True)
class Applied:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0  # rows sent but equal to what the destination held
    skipped: int = 0  # insert: key already there; update: key not there


class Destination(abc.ABC):
    """One destination table or topic. Connects lazily; use as a context manager."""

    identity: str  # names the destination in state files (no secrets)
    dialect: str = ""  # whose name rules its columns follow (coordinator/identifiers.py)
    keeps_marker: bool = True  # databases: a marker row is written with the rows
    needs_unique_key: bool = True
    nan_ok: bool = True  # can store NaN/infinity in float columns
    nul_ok: bool = True  # can store NUL characters in strings

    @abc.abstractmethod
    def describe(self) -> DestTable | None:
        """The table's columns, types and unique keys; None if the table does not exist."""

    @abc.abstractmethod
    def current(self, job: str) -> tuple[Marker | None, int]:
        """The marker of `job`'s last push (None if none) and the table's current row count."""

    @abc.abstractmethod
    def apply(self, plan: Plan, job: str, marker: Marker) -> Applied:
        """Write the plan and `marker` in one transaction (the marker's row count is the table's
        count after the write: `marker.after(applied)`, or counted when that is None)."""

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Release connections. Safe to call twice."""

    def __enter__(self) -> Destination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
