"""The outbox: the coordinator's own events, written in the transaction that decided them and
published after it commits (coordinator/outbox.py relays them), so none is lost in a crash.

Sent events leave the outbox (the events table keeps them): a DELETE writes no index entry
where an UPDATE of sent_at wrote three, and the outbox stays as small as what is in flight
instead of growing with every event ever emitted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import Connection, delete, func, select

from coordinator.events import CompletionEvent
from coordinator.store import schema as S
from coordinator.store.sql import Sql


class Outbox:
    """The outbox's part of a transaction (`Tx` is composed of its parts)."""

    conn: Connection
    sql: Sql

    _body: Callable[[CompletionEvent], str]  # Events._body: a body encoded once a transaction

    def outbox_add(self, events: Iterable[CompletionEvent], now: float) -> None:
        rows = [
            {"event_id": e.event_id, "body": self._body(e), "created_at": now, "sent_at": None}
            for e in events
        ]
        self.sql.write(S.outbox, rows, lambda stmt: stmt.on_conflict_do_nothing())

    def outbox_pending(self, limit: int = 500) -> list[tuple[int, CompletionEvent]]:
        """The oldest unsent events; on PostgreSQL rows another relay holds are skipped (SQLite,
        one writer at a time, has no row locks and renders no FOR UPDATE)."""
        o = S.outbox
        q = select(o.c.id, o.c.body).where(o.c.sent_at.is_(None)).order_by(o.c.id).limit(limit)
        q = q.with_for_update(skip_locked=True)
        return [(i, CompletionEvent.model_validate_json(b)) for i, b in self.conn.execute(q)]

    def outbox_mark_sent(self, ids: Sequence[int]) -> None:
        """Sent events leave the outbox, by outbox id."""
        if not ids:
            return
        o = S.outbox
        self.sql.execute(
            "outbox.sent.ids", lambda: delete(o).where(self.sql.in_list(o.c.id, "ids")), {"ids": list(ids)}
        )

    def outbox_mark_sent_events(self, event_ids: Sequence[str]) -> None:
        """The same by event id (what the engine knows of the events it published itself). Its
        answer is read by nobody: on PostgreSQL it travels with the transaction's next statement
        (deferred.py), as the second transaction of a turn that records a job's end — the one
        that starts its downstream runs — always begins with it."""
        if not event_ids:
            return
        o = S.outbox
        self.sql.execute_later(
            "outbox.sent",
            lambda: delete(o).where(self.sql.in_list(o.c.event_id, "ids")),
            {"ids": list(event_ids)},
            o.name,
        )

    def outbox_count(self) -> int:
        o = S.outbox
        return int(
            self.conn.execute(select(func.count()).select_from(o).where(o.c.sent_at.is_(None))).scalar() or 0
        )
