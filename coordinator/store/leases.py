"""Instance leases in the state store: who is alive, and the conditional updates that adopt the dead.

Every coordinator process holds one row of coord_leases, `name#epoch`, the epoch one more than
the last of its name: that id is what the runs it claims carry as their owner. The row is
renewed every few seconds; a row whose `expires_at` passed (the process died, hung or was
paused), or that was released with runs left running, is adopted by a live instance:

    adopt(tx, me, now)   lock the adoptable rows (FOR UPDATE SKIP LOCKED on PostgreSQL, the
                         transaction's write lock on SQLite), mark each `adopted`, move its
                         active runs to `me` — one transaction, so exactly one adopter wins

Fencing rests on `hold(tx, me)`, run first in each of the engine's write transactions: it reads
this instance's own row as still `live`, and on PostgreSQL keeps a KEY SHARE lock on it until
the transaction ends. An adopter's FOR UPDATE conflicts with that lock (a renewal, an UPDATE of
non-key columns, does not), so a transaction of a paused instance either commits before its
runs are adopted — and the adopter sees what it wrote — or finds its lease gone and writes
nothing. SQLite transactions are serialised whole, which gives the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, exists, func, literal_column, select, text, update

from coordinator.events import CompletionEvent
from coordinator.store import RunRow, Tx
from coordinator.store import schema as S

ACTIVE = ("starting", "running")


def lease_id(name: str, epoch: int) -> str:
    return f"{name}#{epoch}"


@dataclass(frozen=True)
class LeaseRow:
    lease_id: str
    name: str
    epoch: int
    host: str
    pid: int
    pid_start: str | None
    state: str
    started_at: float
    renewed_at: float
    expires_at: float
    ended_at: float | None
    adopted_by: str | None
    note: str | None

    @classmethod
    def of(cls, row) -> LeaseRow:
        m = row._mapping
        return cls(*(m[c.name] for c in S.leases.c))

    def status(self, now: float) -> str:
        """live, expired (not renewed in time, not adopted yet), released, adopted or ended."""
        if self.state == "live" and self.expires_at < now:
            return "expired"
        return self.state


def _active(owner_col):
    r = S.runs
    return exists().where(r.c.owner == owner_col, r.c.state.in_(ACTIVE))


def named(tx: Tx, name: str) -> list[LeaseRow]:
    """The live leases of one instance name (normally none at start-up, or a dead predecessor)."""
    q = select(S.leases).where(S.leases.c.name == name, S.leases.c.state == "live")
    return [LeaseRow.of(r) for r in tx.conn.execute(q)]


def insert(
    tx: Tx, name: str, host: str, pid: int, pid_start: str | None, now: float, ttl_s: float
) -> LeaseRow:
    """A new lease for `name`, its epoch one more than any before (under a lock of the name on
    PostgreSQL, the write lock on SQLite; the unique (name, epoch) refuses a second anyway)."""
    t = S.leases
    if tx.pg:
        tx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "coord-lease:" + name})
    top = tx.conn.execute(select(func.max(t.c.epoch)).where(t.c.name == name)).scalar()
    epoch = (top or 0) + 1
    row = {
        "lease_id": lease_id(name, epoch),
        "name": name,
        "epoch": epoch,
        "host": host,
        "pid": pid,
        "pid_start": pid_start,
        "state": "live",
        "started_at": now,
        "renewed_at": now,
        "expires_at": now + ttl_s,
        "ended_at": None,
        "adopted_by": None,
        "note": None,
    }
    tx.conn.execute(t.insert().values(**row))
    return LeaseRow(**row)


def expire(tx: Tx, lease: str, now: float, note: str) -> None:
    """Mark a live lease expired now (its process is known dead), so it is adopted at once."""
    t = S.leases
    tx.conn.execute(
        update(t).where(t.c.lease_id == lease, t.c.state == "live").values(expires_at=now, note=note)
    )


def renew(tx: Tx, lease: str, now: float, ttl_s: float) -> bool:
    """Extend a live lease; False when it is no longer live (adopted while this process slept)."""
    t = S.leases
    done = tx.conn.execute(
        update(t)
        .where(t.c.lease_id == lease, t.c.state == "live")
        .values(renewed_at=now, expires_at=now + ttl_s)
    )
    return done.rowcount == 1


def hold(tx: Tx, lease: str, lost: Callable[[], BaseException]) -> None:
    """The fence: this lease must still be live, and is kept so until the transaction ends (see
    the module docstring); else the transaction raises `lost()`. It runs in every write
    transaction, so it is compiled once and, on PostgreSQL, answered with the transaction's next
    statement instead of a round trip of its own (sql.py's `check`): nothing the transaction
    reads is handed back before it held, and what it wrote is rolled back when it did not."""
    tx.sql.check("lease.hold", _hold_statement, {"fence_lease": lease}, lost)


def _hold_statement():
    t = S.leases
    live = t.c.state == literal_column("'live'")  # a literal, no parameter: it runs inside others (sql.py)
    q = select(t.c.lease_id).where(t.c.lease_id == bindparam("fence_lease", type_=t.c.lease_id.type), live)
    return q.with_for_update(read=True, key_share=True)  # FOR KEY SHARE; SQLite renders none


def release(tx: Tx, lease: str, now: float) -> int:
    """End this instance's lease on a clean stop; returns its runs left running (then the lease
    is `released`, adopted at once by the next live instance; else `ended`)."""
    t, r = S.leases, S.runs
    left = int(
        tx.conn.execute(
            select(func.count()).select_from(r).where(r.c.owner == lease, r.c.state.in_(ACTIVE))
        ).scalar()
        or 0
    )
    state = "released" if left else "ended"
    note = f"stopped, {left} run(s) left running" if left else "stopped"
    tx.conn.execute(
        update(t)
        .where(t.c.lease_id == lease, t.c.state == "live")
        .values(state=state, ended_at=now, expires_at=now, note=note)
    )
    return left


def end(tx: Tx, lease: str, now: float, note: str) -> None:
    """End a lease that may not act any more (it found itself adopted): for the views."""
    t = S.leases
    tx.conn.execute(
        update(t).where(t.c.lease_id == lease).values(ended_at=func.coalesce(t.c.ended_at, now), note=note)
    )


@dataclass(frozen=True)
class Adopted:
    """A dead lease taken over, with the runs that were active under it (now the adopter's)."""

    lease: LeaseRow
    runs: list[RunRow]


def adoptable(tx: Tx, me: str, now: float) -> list[LeaseRow]:
    """Leases that expired or were released with runs left (not yet adopted), locked for this
    transaction; on PostgreSQL those another transaction holds are skipped (next look)."""
    t = S.leases
    q = select(t).where(
        t.c.lease_id != me,
        ((t.c.state == "live") & (t.c.expires_at < now))
        | ((t.c.state == "released") & _active(t.c.lease_id)),
    )
    if tx.pg:
        q = q.with_for_update(skip_locked=True, of=t)
    return [LeaseRow.of(r) for r in tx.conn.execute(q)]


def adopt(tx: Tx, me: str, now: float) -> list[Adopted]:
    """Take over every adoptable lease and its active runs (see the module docstring)."""
    t = S.leases
    out = []
    for lease in adoptable(tx, me, now):
        won = tx.conn.execute(
            update(t)
            .where(t.c.lease_id == lease.lease_id, t.c.state == lease.state)
            .values(
                state="adopted",
                adopted_by=me,
                ended_at=now,
                note=f"{'expired' if lease.state == 'live' else 'released'}; adopted by {me}",
            )
        )
        if won.rowcount != 1:
            continue
        out.append(Adopted(lease, _move_runs(tx, lease.lease_id, me)))
    return out


def adopt_legacy(tx: Tx, name: str, me: str) -> list[RunRow]:
    """Runs left active by this instance name before leases existed (their owner is the bare
    name): this instance's predecessor's, adopted at its start-up."""
    return _move_runs(tx, name, me)


def _move_runs(tx: Tx, old: str, me: str) -> list[RunRow]:
    r = S.runs
    rows = tx.conn.execute(
        update(r)
        .where(r.c.owner == old, r.c.state.in_(ACTIVE))
        .values(owner=me, adopted_from=old)
        .returning(*r.c)
    )
    return [RunRow.of(row) for row in rows]


def every(tx: Tx) -> dict[str, LeaseRow]:
    """All leases by id (for views: each run's owner and its lease state)."""
    return {row.lease_id: row for row in (LeaseRow.of(x) for x in tx.conn.execute(select(S.leases)))}


def adopted_from(tx: Tx, run_ids: list[str]) -> dict[str, str]:
    """The lease each of these runs was last adopted from (runs never adopted are left out)."""
    r = S.runs
    if not run_ids:
        return {}
    q = select(r.c.run_id, r.c.adopted_from).where(r.c.run_id.in_(run_ids), r.c.adopted_from.is_not(None))
    return dict(tx.conn.execute(q).all())


def live(tx: Tx, now: float) -> list[LeaseRow]:
    """The leases of instances alive now (renewed within their TTL)."""
    t = S.leases
    q = select(t).where(t.c.state == "live", t.c.expires_at >= now).order_by(t.c.lease_id)
    return [LeaseRow.of(r) for r in tx.conn.execute(q)]


def peers_events(tx: Tx, me: str, events: Sequence[CompletionEvent], now: float) -> set[str]:
    """The ids of those outbox events whose run is owned by another live instance: that peer
    published them itself a moment ago (their acknowledgement is on its way to it), so a relay
    here would put them on the bus twice. A dead or released lease's runs are their adopter's
    (and a finished run of a dead lease stays with that lease, not live): those are relayed."""
    runs = {e.producer_run_id for e in events if e.producer_run_id}
    if not runs:
        return set()
    r, t = S.runs, S.leases
    q = (
        select(r.c.run_id)
        .join(t, t.c.lease_id == r.c.owner)
        .where(r.c.run_id.in_(runs), t.c.lease_id != me, t.c.state == "live", t.c.expires_at >= now)
    )
    theirs = set(tx.conn.execute(q).scalars())
    return {e.event_id for e in events if e.producer_run_id in theirs}


def cancel_run(tx: Tx, run_id: str, attempt: int, now: float, reason: str) -> bool:
    """Mark a run cancelled — its current attempt, while it is ready, starting or running; False
    when it moved on meanwhile. A cancelled run is dead like a failed one: `coord retry` revives it,
    downstream waits."""
    r = S.runs
    if tx.finish(run_id, attempt, "cancelled", now, error=reason):
        return True
    done = tx.conn.execute(
        update(r)
        .where(r.c.run_id == run_id, r.c.attempt == attempt, r.c.state == "ready")
        .values(state="cancelled", error=reason, finished_at=now)
    )
    return done.rowcount == 1
