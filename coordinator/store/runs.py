"""Runs and their attempts: created from readiness' candidates, claimed, started, finished, retried.

Exactly-once launching rests on two things: runs are unique by (job, partition, input set,
generation) so a replay inserts nothing, and a run is starting only when the transaction that
created it claimed it (`insert_runs(room=...)`) or it moved ready → starting through `claim`, a
conditional update that exactly one claimer can win — both under the pool's lock (an advisory
lock on PostgreSQL, the write lock on SQLite: `Sql.lock`), which keeps pool sizes across
instances. Only the current, active attempt of a run may start or finish it (`update_each` with
the state condition), so a stale worker's report changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, exists, func, select, text, tuple_, update

from coordinator.errors import StoreError
from coordinator.handles import Handle
from coordinator.readiness import Candidate, Version
from coordinator.store import schema as S
from coordinator.store.rows import (
    ACTIVE,
    DEAD,
    OPEN,
    Finish,
    RunRow,
    dumps,
    handle_json,
    in_states,
    pkey,
    run_id_for,
    version_dict,
)
from coordinator.store.sql import Sql
from coordinator.store.sqlparts import greatest, least, rows_of


class Runs:
    """The runs' part of a transaction (`Tx` is composed of its parts)."""

    conn: Connection
    sql: Sql
    _inputs: dict[str, tuple[Version, ...]]  # inputs of runs created in this transaction

    def insert_runs(
        self,
        cands: Sequence[Candidate],
        pools: dict[str, str],
        budgets: dict[str, int],
        now: float,
        rerun: bool = False,
        *,
        room: dict[str, int] | None = None,
        owner: str | None = None,
    ) -> list[RunRow]:
        """Create runs for candidates; returns the ones created now (replays create nothing).

        `rerun` makes a new generation even when a run with the same inputs exists.
        `room` (pool → free slots, from `pool_room` in this transaction) starts runs as they are
        created — state `starting`, attempt 1, for `owner` — while their pool has room: the same
        as a claim, without writing each row twice.
        """
        room = dict(room or {})
        rows: dict[str, dict[str, object]] = {}
        busy = self._open_partitions([c for c in cands if c.rerun and not c.violation]) if room else set()
        for c in cands:
            generation = self._next_generation(c.job, c.partition, c.input_key) if rerun else 0
            run_id = run_id_for(c.job, c.partition, c.input_key, generation)
            if run_id in rows:
                continue
            state = "blocked" if c.violation else "ready"
            pool = pools[c.job]
            # a re-run waits (ready) while an earlier run of its job partition is open: started
            # beside it, the earlier one could finish last and leave the partition on older data
            start = state == "ready" and room.get(pool, 0) > 0 and (c.job, pkey(c.partition)) not in busy
            if start:
                room[pool] -= 1
            row = {
                "run_id": run_id,
                "job": c.job,
                "partition_key": pkey(c.partition),
                "input_key": "",  # a hash of the inputs' event ids: RunRow reads it from them
                "generation": generation,
                "state": "starting" if start else state,
                "pool": pool,
                "attempt": 1 if start else 0,
                "max_attempts": budgets[c.job],
                "budget": budgets[c.job],
                "inputs": dumps([version_dict(v) for v in c.inputs]),
                "handle": None,
                "error": str(c.violation) if c.violation else None,
                "not_before": 0.0,
                "owner": owner if start else None,
                "created_at": now,
                "started_at": now if start else None,
                "finished_at": now if c.violation else None,
            }
            rows[run_id] = row
            self._inputs[run_id] = tuple(c.inputs)
        if not rows:
            return []
        inserted = self.sql.insert_new(S.runs, "run_id", rows)
        return [RunRow.from_dict(r, self._inputs[run_id]) for run_id, r in rows.items() if run_id in inserted]

    def _next_generation(self, job: str, partition: str | None, key: str, window: int = 16) -> int:
        """One more than the newest generation of (job, partition, inputs) stored: run ids are
        hashes of the four (rows.run_id_for), looked up a window of generations at a time."""
        r = S.runs
        first = 0
        while True:
            ids = {run_id_for(job, partition, key, g): g for g in range(first, first + window)}
            q = select(r.c.run_id).where(r.c.run_id.in_(list(ids)))
            found = [ids[i] for i in self.conn.execute(q).scalars()]
            if len(found) < window:
                return max(found, default=first - 1) + 1
            first += window

    def _open_partitions(self, cands: Sequence[Candidate]) -> set[tuple[str, str]]:
        """(job, partition key) of these candidates that have a ready, starting or running run."""
        if not cands:
            return set()
        r = S.runs
        q = select(r.c.job, r.c.partition_key).where(in_states(OPEN))
        pairs = sorted({(c.job, pkey(c.partition)) for c in cands})
        return {(job, key) for job, key in self.sql.pairs("open", q, r.c.job, r.c.partition_key, pairs)}

    def get_run(self, run_id: str) -> RunRow | None:
        row = self.conn.execute(select(S.runs).where(S.runs.c.run_id == run_id)).first()
        return RunRow.of(row) if row else None

    def find_runs(self, run_id_prefix: str) -> list[RunRow]:
        q = select(S.runs).where(S.runs.c.run_id.like(run_id_prefix + "%")).limit(2)
        return [RunRow.of(r) for r in self.conn.execute(q)]

    def list_runs(
        self,
        job: str | None = None,
        states: Sequence[str] | None = None,
        partition: str | None = None,
        limit: int | None = 200,
    ) -> list[RunRow]:
        q = select(S.runs).order_by(S.runs.c.created_at.desc(), S.runs.c.run_id)
        if job:
            q = q.where(S.runs.c.job == job)
        if states:
            q = q.where(S.runs.c.state.in_(states))
        if partition is not None:
            q = q.where(S.runs.c.partition_key == pkey(partition))
        if limit:
            q = q.limit(limit)
        return [RunRow.of(r) for r in self.conn.execute(q)]

    def count_runs(
        self, states: Sequence[str], pool: str | None = None, due_before: float | None = None
    ) -> int:
        # literal states: a plan that uses the partial indexes (see schema.py) even when prepared
        q = select(func.count()).select_from(S.runs).where(in_states(states))
        if pool is not None:
            q = q.where(S.runs.c.pool == pool)
        if due_before is not None:
            q = q.where(S.runs.c.not_before <= due_before)
        return int(self.conn.execute(q).scalar() or 0)

    def active_runs(self, owner: str) -> list[RunRow]:
        q = select(S.runs).where(S.runs.c.state.in_(ACTIVE), S.runs.c.owner == owner)
        return [RunRow.of(r) for r in self.conn.execute(q)]

    # ------------------------------------------------------------------ pool room and claims
    def pool_room(self, pool: str, size: int, now: float) -> int:
        """Free slots of `pool` for runs created in this transaction: 0 while due ready runs wait
        (they go first, through `claim`) or while another instance holds the pool's lock."""
        if not self.sql.lock(pool_lock(pool), wait=False):
            return 0
        # one round trip for both (the lock above is a statement of its own: a statement's
        # snapshot is taken before it runs, so a lock taken inside one would not cover it)
        params = {"pool": pool, "now": now}
        ready_due, running = self.sql.execute("pool.room", _pool_room_statement, params).fetchone()
        return 0 if ready_due else max(0, size - running)

    def claim(
        self, pool: str, size: int, owner: str, now: float, limit: int | None = None, *, wait: bool = True
    ) -> list[RunRow] | None:
        """Move up to the pool's free slots of due ready runs to `starting`, for `owner`.

        The pool size holds across every coordinator sharing the store. On PostgreSQL an advisory
        lock per pool serialises claimers; SQLite transactions are BEGIN IMMEDIATE, one writer at
        a time. The update is still conditional (state 'ready') and only rows this claim moved
        are returned.
        With `wait=False`, None (nothing done) when another transaction holds the pool's lock:
        the engine claims inside its turn's transaction, and would otherwise hold its other
        instance up until it commits; it tries again next turn instead.
        """
        if not self.sql.lock(pool_lock(pool), wait):
            return None
        params: dict[str, object] = {"pool": pool, "size": size, "now": now, "owner": owner}
        if limit is not None:
            params["limit"] = limit
        limited = limit is not None
        rows = rows_of(self.sql.execute(("claim", limited), lambda: _claim_statement(limited), params))
        known = self._inputs
        claimed = (RunRow.from_dict(m, known.get(m["run_id"])) for m in rows)
        return sorted(claimed, key=lambda run: (run.not_before, run.created_at, run.run_id))

    # ------------------------------------------------------------------ attempts
    def set_running_many(self, items: Sequence[tuple[str, int, Handle]], now: float) -> set[str]:
        """Store the handles of started attempts; returns the run ids updated (stale ones are not)."""
        if not items:
            return set()
        rows = [{"b_id": i, "b_attempt": a, "b_handle": handle_json(h)} for i, a, h in items]
        # the attempt is the run's row until the run goes on to another (see `attempts`)
        return {i for i, _ in self._update_current("runs.running", rows, _running_values)}

    def set_running(self, run_id: str, attempt: int, handle: Handle, now: float) -> bool:
        return bool(self.set_running_many([(run_id, attempt, handle)], now))

    def finish_many(self, items: Sequence[Finish], now: float) -> set[str]:
        """End attempts: `succeeded`, `failed` or `blocked`, or back to `ready` at `retry_at`.

        Only the attempt that is current and active may finish (a stale worker changes nothing);
        returns the run ids that did.
        """
        if not items:
            return set()
        retried = [f for f in items if f.retry_at is not None]
        started = self._started_at([f.run_id for f in retried]) if retried else {}
        valid = self._update_current(
            "runs.finish",
            [
                {
                    "b_id": f.run_id,
                    "b_attempt": f.attempt,
                    "b_error": f.error,
                    "b_state": "ready" if f.retry_at is not None else f.state,
                    "b_not_before": f.retry_at if f.retry_at is not None else 0.0,
                    "b_finished": None if f.retry_at is not None else now,
                    "b_handle": None if f.handle is None else handle_json(f.handle),
                    "b_log_path": f.log_path,
                    "b_details": _details_json(f),
                }
                for f in items
            ],
            _finish_values,
        )
        done = [f for f in items if (f.run_id, f.attempt) in valid]
        # an attempt the run goes on from leaves its row: the next claim starts the run afresh
        self._attempts(
            [
                {
                    "run_id": f.run_id,
                    "attempt": f.attempt,
                    "state": f.state,
                    "started_at": started.get(f.run_id) or now,
                    "finished_at": now,
                    "error": f.error,
                    "log_path": f.log_path,
                    "details": _details_json(f),
                }
                for f in done
                if f.retry_at is not None
            ]
        )
        return {f.run_id for f in done}

    def _started_at(self, run_ids: list[str]) -> dict[str, float | None]:
        r = S.runs
        q = select(r.c.run_id, r.c.started_at).where(r.c.run_id.in_(sorted(set(run_ids))))
        return dict(self.conn.execute(q).all())

    def finish(
        self,
        run_id: str,
        attempt: int,
        state: str,
        now: float,
        error: str | None = None,
        log_path: str | None = None,
        retry_at: float | None = None,
    ) -> bool:
        return bool(self.finish_many([Finish(run_id, attempt, state, error, log_path, retry_at)], now))

    def _update_current(self, key: str, rows: list[dict], values) -> set[tuple[str, int]]:
        """UPDATE the runs whose current attempt (b_id, b_attempt) is still active; returns the
        (run_id, attempt) pairs updated."""
        return self.sql.update_each(key, S.runs, _MATCH, in_states(ACTIVE), _BIND_TYPES, rows, values)

    def _attempts(self, rows: list[dict[str, object]]) -> None:
        a = S.attempts

        def upsert(stmt):
            ex = stmt.excluded
            # keep started_at of the first write; later writes bring the state and how it ended
            return stmt.on_conflict_do_update(
                index_elements=[a.c.run_id, a.c.attempt],
                set_={
                    "state": ex.state,
                    "finished_at": ex.finished_at,
                    "error": ex.error,
                    "log_path": ex.log_path,
                    "details": func.coalesce(ex.details, a.c.details),
                },
            )

        self.sql.write(a, rows, upsert)

    def attempts(self, run_id: str) -> list[dict]:
        """A run's attempts, oldest first, as coord_attempts' rows: those it went on from, as
        stored, and its current one from the run's own row (once it runs or has ended). Stores
        of earlier builds kept every attempt as a row; one still running then reads from the run."""
        a, r = S.attempts, S.runs
        q = select(a).where(a.c.run_id == run_id).order_by(a.c.attempt)
        found = {m["attempt"]: dict(m) for m in self.conn.execute(q).mappings()}
        run = self.conn.execute(select(r).where(r.c.run_id == run_id)).mappings().first()
        if run and run["attempt"] >= 1 and run["state"] not in ("ready", "starting"):
            kept = found.get(run["attempt"])
            if kept is None or kept["finished_at"] is None:
                found[run["attempt"]] = {
                    "run_id": run_id,
                    "attempt": run["attempt"],
                    "state": run["state"],
                    "started_at": run["started_at"] if run["started_at"] is not None else run["created_at"],
                    "finished_at": run["finished_at"],
                    "error": run["error"],
                    "log_path": run["log_path"],
                    "details": run["details"],
                }
        return [found[n] for n in sorted(found)]

    def retry(self, run_id: str, now: float) -> RunRow:
        """Make a failed or blocked run ready again, with a fresh retry budget."""
        run = self.get_run(run_id)
        if run is None:
            raise StoreError(f"no run {run_id!r}")
        if run.state not in DEAD:
            raise StoreError(f"run {run_id} is {run.state}; only failed or blocked runs can be retried")
        if run.attempt >= 1:  # the attempt that ended leaves the run's row for coord_attempts
            (ended,) = [a for a in self.attempts(run_id) if a["attempt"] == run.attempt] or [None]
            if ended is not None:
                self._attempts([ended])
        r = S.runs
        self.conn.execute(
            update(r)
            .where(r.c.run_id == run_id, r.c.state.in_(DEAD))
            .values(state="ready", not_before=now, max_attempts=run.attempt + run.budget, finished_at=None)
        )
        return self.get_run(run_id)  # type: ignore[return-value]


def pool_lock(pool: str) -> str:
    """The name of the lock a pool's claimers hold (`Sql.lock`)."""
    return "coord-pool:" + pool


# the run updates of a started and of a finished attempt: matched by (b_id, b_attempt)
_MATCH = {"run_id": "b_id", "attempt": "b_attempt"}
_BIND_TYPES = {
    "b_id": S.runs.c.run_id.type,
    "b_attempt": S.runs.c.attempt.type,
    "b_handle": S.runs.c.handle.type,
    "b_state": S.runs.c.state.type,
    "b_error": S.runs.c.error.type,
    "b_not_before": S.runs.c.not_before.type,
    "b_finished": S.runs.c.finished_at.type,
    "b_log_path": S.runs.c.log_path.type,
    "b_details": S.runs.c.details.type,
}


def _details_json(f: Finish) -> str | None:
    return json.dumps(dict(f.details), default=str) if f.details else None


def _running_values(b) -> dict:
    return {"state": "running", "handle": b["b_handle"]}


def _finish_values(b) -> dict:
    return {
        "state": b["b_state"],
        "handle": func.coalesce(b["b_handle"], S.runs.c.handle),
        "error": b["b_error"],
        "not_before": b["b_not_before"],
        "finished_at": b["b_finished"],
        "log_path": b["b_log_path"],
        "details": b["b_details"],
    }


def _pool_room_statement():
    r = S.runs
    p, t = bindparam("pool", type_=r.c.pool.type), bindparam("now", type_=r.c.not_before.type)
    waiting = exists().where(in_states(["ready"]), r.c.pool == p, r.c.not_before <= t)
    active = select(func.count()).select_from(r).where(in_states(ACTIVE), r.c.pool == p)
    return select(waiting, active.scalar_subquery())


def _claim_statement(limited: bool):
    """The claim: the pool's free slots, the pick and the move in one statement (one round
    trip). No FOR UPDATE: every claimer of the pool holds its lock, and only claims move ready
    runs (the UPDATE checks the state again); MATERIALIZED: the pick is evaluated once (a plain
    IN-subquery with LIMIT may be evaluated twice and claim beyond the pool)."""
    r = S.runs
    pool = bindparam("pool", type_=r.c.pool.type)
    now = bindparam("now", type_=r.c.not_before.type)
    active = select(func.count()).select_from(r).where(in_states(ACTIVE), r.c.pool == pool)
    free = greatest(0, bindparam("size", type_=r.c.attempt.type) - active.scalar_subquery())
    if limited:
        free = least(free, bindparam("limit", type_=r.c.attempt.type))
    # one run of a job partition at a time, the oldest first: a re-run never runs beside (and
    # never finishes before) the run it supersedes
    other = S.runs.alias("other")
    same = (other.c.job == r.c.job, other.c.partition_key == r.c.partition_key)
    active = ", ".join(f"'{state}'" for state in ACTIVE)  # literals: the statement compiles once
    busy = exists().where(*same, text(f"other.state IN ({active})"))
    earlier = tuple_(other.c.created_at, other.c.run_id) < tuple_(r.c.created_at, r.c.run_id)
    older = exists().where(*same, text("other.state = 'ready'"), earlier)
    pick = (
        select(r.c.run_id)
        .where(in_states(["ready"]), r.c.pool == pool, r.c.not_before <= now, ~busy, ~older)
        .order_by(r.c.not_before, r.c.created_at)
        .limit(free)
        .cte("pick")
        .prefix_with("MATERIALIZED")
    )
    return (
        update(r)
        .where(r.c.run_id.in_(select(pick.c.run_id).scalar_subquery()), r.c.state == "ready")
        .values(
            state="starting",
            attempt=r.c.attempt + 1,
            owner=bindparam("owner", type_=r.c.owner.type),
            started_at=now,
            handle=None,
            error=None,
            log_path=None,
            details=None,
        )
        .returning(*r.c)
    )
