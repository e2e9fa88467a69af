"""The state store's record of refused bus messages (table coord_dead_letters), one row per offset.

Two jobs. The dedupe: intake books a refused message here ('pending') before writing its dead
letter and settles it after ('written'), so a message that comes back (a crash before the
offsets were committed, a rebalance) is not dead-lettered again; one left 'pending' by a crash
in between is looked for on the dead-letter topic before it is written again. And the book of
what the dead-letter topic would not take: after intake's bounded wait, the message's
coordinates, reason, size and hash are kept here (`state` 'unwritable', with the topic's error)
and the loop moves on; nothing is lost without a trace, and nothing blocks.

Rows are keyed by (consumer group, topic, partition, offset): another group reading the same
topic decides for itself. Each call is its own short transaction, made before the batch's
offsets are committed (intake's order: dead letters durable, then this record, then offsets).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from coordinator.errors import StoreError
from coordinator.store.schema import dead_letters

PENDING, WRITTEN, UNWRITABLE = "pending", "written", "unwritable"
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
    state: str  # PENDING, WRITTEN or UNWRITABLE
    error: str | None = None


class DeadLetterBook:
    """coord_dead_letters of one state store (a `StateStore`, whose engine it borrows)."""

    def __init__(self, store) -> None:  # a StateStore: not imported, the store package imports this
        self.store = store

    def states(self, group: str, coordinates: Iterable[Coordinates]) -> dict[Coordinates, str]:
        """The state of those of these messages the group has booked already."""
        wanted = list(dict.fromkeys(coordinates))
        found: dict[Coordinates, str] = {}
        if not wanted:
            return found
        d = dead_letters.c
        key = tuple_(d.topic, d.partition, d.offset)
        try:
            with self.store.engine.begin() as conn:
                for start in range(0, len(wanted), _CHUNK):
                    rows = conn.execute(
                        select(d.topic, d.partition, d.offset, d.state).where(
                            d.consumer_group == group, key.in_(wanted[start : start + _CHUNK])
                        )
                    )
                    found.update(((t, p, o), state) for t, p, o, state in rows)
        except SQLAlchemyError as exc:
            raise StoreError(f"state store: dead letters: {_short(exc)}") from exc
        return found

    def settle(self, group: str, outcomes: Sequence[tuple[Coordinates, str, str | None]]) -> None:
        """Set the state (and error) of booked messages: ((topic, partition, offset), state, error)."""
        if not outcomes:
            return
        d = dead_letters.c
        statement = (
            update(dead_letters)
            .where(d.consumer_group == group, d.topic == bindparam("t"), d.partition == bindparam("p"),
                   d.offset == bindparam("o"))
            .values(state=bindparam("s"), error=bindparam("e"))
        )
        params = [{"t": t, "p": p, "o": o, "s": state, "e": None if error is None else error[:2000]}
                  for (t, p, o), state, error in outcomes]
        try:
            with self.store.engine.begin() as conn:
                conn.execute(statement, params)
        except SQLAlchemyError as exc:
            raise StoreError(f"state store: dead letters: {_short(exc)}") from exc

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
