"""The alerts' records (coordinator/alerts.py decides and posts them): one row per incident and
webhook, unique by both, so an incident is recorded once whatever repeats it, and re-posted
with backoff until its webhook answers.

The table is created when the alerting is set up (`alerts_setup`), not by a migration: a
coordinator without webhooks never has it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Column, Connection, Float, Integer, MetaData, String, Table, Text, select, update

from coordinator.store.sql import Sql

metadata = MetaData()
alerts_table = Table(
    "coord_alerts",
    metadata,
    Column("incident", String(400), primary_key=True),
    Column("url", String(1000), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False, default=0.0),
    Column("last_error", Text),
)


class AlertRecords:
    """The alert records' part of a transaction (`Tx` is composed of its parts)."""

    conn: Connection
    sql: Sql

    def alerts_setup(self) -> None:
        metadata.create_all(self.conn, checkfirst=True)

    def alerts_add(self, rows: Sequence[Mapping[str, object]]) -> int:
        """Record alert rows (columns of coord_alerts); returns how many were new."""
        a = alerts_table
        insert = self.sql.insert(a).on_conflict_do_nothing().returning(a.c.incident)
        new = 0
        for row in rows:  # RETURNING tells a fresh row from a conflict on every driver
            new += self.conn.execute(insert, dict(row)).first() is not None
        return new

    def alerts_due(self, now: float, incident: str | None = None) -> list[dict]:
        """Unsent alerts whose next try is due (of one incident, or all)."""
        a = alerts_table
        q = select(a).where(a.c.sent_at.is_(None), a.c.next_at <= now)
        if incident is not None:
            q = q.where(a.c.incident == incident)
        return [dict(row._mapping) for row in self.conn.execute(q)]

    def alert_tried(self, incident: str, url: str, **values: object) -> None:
        """What one delivery try left (attempts, sent_at or last_error and next_at), unless sent."""
        a = alerts_table
        self.conn.execute(
            update(a).where(a.c.incident == incident, a.c.url == url, a.c.sent_at.is_(None)).values(**values)
        )

    def alert_incidents(self, kinds: Sequence[str]) -> set[str]:
        """The incidents recorded of these kinds."""
        a = alerts_table
        return set(self.conn.execute(select(a.c.incident).where(a.c.kind.in_(kinds))).scalars())
