"""The audit of operator actions: who retried, re-ran, cancelled, backfilled or published, and when.

One row per action, written after the action's own transaction committed (an action refused is
not an action taken). The actor is the bearer token's name over HTTP, `cli:<user>` from the
command line. Read per run for the run page, or newest first for /api/audit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from sqlalchemy import or_, select

from coordinator.store import StateStore, Tx
from coordinator.store import schema as S
from coordinator.store.rows import pkey, unkey

ACTIONS = ("retry", "rerun", "cancel", "backfill", "publish")


@dataclass(frozen=True)
class AuditRow:
    at: float
    actor: str
    action: str
    run_id: str | None
    job: str | None  # the job; for a publish, the dataset
    partition: str | None
    detail: str | None

    def as_json(self) -> dict:
        return asdict(self)


def add(tx: Tx, actor: str, action: str, **fields: str | float | None) -> None:
    """One row (`row`'s fields, by name), in the caller's transaction."""
    add_many(tx, [row(actor, action, **fields)])  # type: ignore[arg-type]


def add_many(tx: Tx, rows: list[dict[str, object]]) -> None:
    """Rows made by `row`, in one statement (a write nobody reads the answer of: on PostgreSQL
    it travels with the transaction's next statement — POST /events' with the events' insert in
    the launch path's first transaction)."""
    if rows:
        tx.sql.write(S.audit, rows)


def row(
    actor: str,
    action: str,
    run_id: str | None = None,
    job: str | None = None,
    partition: str | None = None,
    detail: str | None = None,
    at: float | None = None,
) -> dict[str, object]:
    """An audit row's columns (an unknown action is refused: ValueError)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return {
        "at": time.time() if at is None else at,
        "actor": actor[:200],
        "action": action,
        "run_id": run_id,
        "job": job,
        "partition_key": pkey(partition),
        "detail": detail,
    }


def record(store: StateStore, actor: str, action: str, **fields: object) -> None:
    """`add` in a transaction of its own."""
    with store.begin() as tx:
        add(tx, actor, action, **fields)  # type: ignore[arg-type]


def _rows(tx: Tx, query) -> list[AuditRow]:  # noqa: ANN001
    a = S.audit
    return [
        AuditRow(r.at, r.actor, r.action, r.run_id, r.job, unkey(r.partition_key), r.detail)
        for r in tx.conn.execute(query.order_by(a.c.at.desc(), a.c.audit_id.desc()))
    ]


def for_run(tx: Tx, run_id: str, job: str, partition: str | None, limit: int = 100) -> list[AuditRow]:
    """The actions on this run, and the reruns and backfills of its job partition, newest first."""
    a = S.audit
    of_partition = (a.c.job == job) & (a.c.partition_key == pkey(partition))
    on_partition = of_partition & a.c.action.in_(("rerun", "backfill"))
    return _rows(tx, select(a).where(or_(a.c.run_id == run_id, on_partition)).limit(limit))


def recent(tx: Tx, limit: int = 200) -> list[AuditRow]:
    return _rows(tx, select(S.audit).limit(limit))
