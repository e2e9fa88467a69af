"""The state store's record of refused bus messages (table coord_dead_letters), one row per offset.

Two jobs. The dedupe: intake looks here before writing a dead letter, so a message that comes
back (a crash before the offsets were committed, a rebalance) is not dead-lettered again. And
the book of what the dead-letter topic would not take: after intake's bounded retries, the
message's coordinates, reason, size and hash are kept here (`state` 'unwritable', with the
topic's error) and the loop moves on; nothing is lost without a trace, and nothing blocks.

Rows are keyed by (consumer group, topic, partition, offset): another group reading the same
topic decides for itself. Each call is its own short transaction, made before the batch's
offsets are committed (intake's order: dead letters durable, then this record, then offsets).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from coordinator.errors import StoreError
from coordinator.store.schema import dead_letters

WRITTEN, UNWRITABLE = "written", "unwritable"
Coordinates = tuple[str, int, int]  # topic, partition, offset
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    size: int
    sha256: str | None
    state: str  # WRITTEN or UNWRITABLE
    error: str | None = None


class DeadLetterBook:
    """coord_dead_letters of one state store (a `StateStore`, whose engine it borrows)."""

    def __init__(self, store) -> None:  # a StateStore: not imported, the store package imports this
        self.store = store

    def known(self, group: str, coordinates: Iterable[Coordinates]) -> set[Coordinates]:
        """Which of these messages the group has dead-lettered (or found unwritable) already."""
        wanted = list(dict.fromkeys(coordinates))
        found: set[Coordinates] = set()
        if not wanted:
            return found
        key = tuple_(dead_letters.c.topic, dead_letters.c.partition, dead_letters.c.offset)
        try:
            with self.store.engine.begin() as conn:
                for start in range(0, len(wanted), _CHUNK):
                    rows = conn.execute(
                        select(dead_letters.c.topic, dead_letters.c.partition, dead_letters.c.offset).where(
                            dead_letters.c.consumer_group == group,
                            key.in_(wanted[start : start + _CHUNK]),
                        )
                    )
                    found.update((t, p, o) for t, p, o in rows)
        except SQLAlchemyError as exc:
            raise StoreError(f"state store: dead letters: {_short(exc)}") from exc
        return found

    def record(self, group: str, rows: Sequence[DeadLetterRow], now: float) -> None:
        """Keep these; a row already there (same group and coordinates) stays as it was."""
        if not rows:
            return
        values = [
            {
                "consumer_group": group,
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "reason": r.reason,
                "detail": r.detail[:2000],
                "size": r.size,
                "sha256": r.sha256,
                "state": r.state,
                "error": None if r.error is None else r.error[:2000],
                "recorded_at": now,
            }
            for r in rows
        ]
        try:
            with self.store.engine.begin() as conn:
                dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
                conn.execute(dialect.insert(dead_letters).on_conflict_do_nothing(), values)
        except SQLAlchemyError as exc:
            raise StoreError(f"state store: dead letters: {_short(exc)}") from exc

    def rows(self, group: str | None = None, state: str | None = None, limit: int = 1000) -> list[dict]:
        """The newest rows (all groups unless `group`), for views and checks."""
        query = select(dead_letters).order_by(dead_letters.c.recorded_at.desc()).limit(limit)
        if group is not None:
            query = query.where(dead_letters.c.consumer_group == group)
        if state is not None:
            query = query.where(dead_letters.c.state == state)
        try:
            with self.store.engine.begin() as conn:
                return [dict(row._mapping) for row in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise StoreError(f"state store: dead letters: {_short(exc)}") from exc

    def count(self, group: str | None = None, state: str | None = None) -> int:
        query = select(func.count()).select_from(dead_letters)
        if group is not None:
            query = query.where(dead_letters.c.consumer_group == group)
        if state is not None:
            query = query.where(dead_letters.c.state == state)
        try:
            with self.store.engine.begin() as conn:
                return int(conn.execute(query).scalar_one())
        except SQLAlchemyError as exc:
            raise StoreError(f"state store: dead letters: {_short(exc)}") from exc


def _short(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:500]
