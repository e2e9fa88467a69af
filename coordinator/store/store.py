"""The state store: events, partition versions, runs, attempts and the outbox, in one database.

SQLite (a file under the coordinator's home) by default, PostgreSQL in production; the same
SQLAlchemy Core statements serve both. Every change the engine makes is one `Tx` (one
database transaction) so that "record events + create runs + queue outbox events" and
"finish a run + record its outputs + queue them" are atomic. SQLAlchemy errors are mapped to
StoreError here and never leave this module.

Exactly-once launching rests on two things: runs are unique by (job, partition, input set,
generation) so a replay inserts nothing, and a run is starting only when the transaction that
created it claimed it (`insert_runs(room=...)`) or it moved ready → starting through `claim`, a
conditional update that exactly one claimer can win — both under the pool's lock (an advisory
lock on PostgreSQL, the write lock on SQLite), which keeps pool sizes across instances.
"""

from __future__ import annotations

import hashlib
import json
import operator
import sqlite3
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import orjson
import psycopg
from psycopg.types.json import Json
from sqlalchemy import (
    Connection,
    Engine,
    any_,
    bindparam,
    column,
    create_engine,
    delete,
    event,
    exists,
    func,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.exc import SQLAlchemyError

from coordinator import readiness
from coordinator.errors import StoreError
from coordinator.events import Column, CompletionEvent
from coordinator.handles import Handle
from coordinator.readiness import Candidate, Key, Snapshot, Version
from coordinator.spec.models import PipelineSpec
from coordinator.store import schema as S
from coordinator.store.migrations import migrate

ACTIVE = ("starting", "running")
OPEN = ("ready", "starting", "running")
DEAD = ("failed", "blocked")
_CHUNK = 400


def _dumps(value: object, default=None) -> str:
    """JSON text for the store's text columns (orjson: these run once per event and run)."""
    return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS).decode()


_loads = orjson.loads


def pkey(partition: str | None) -> str:
    return partition or ""


def unkey(partition_key: str) -> str | None:
    return partition_key or None


def run_id_for(job: str, partition: str | None, input_key: str, generation: int) -> str:
    raw = f"{job}\n{pkey(partition)}\n{input_key}\n{generation}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _version_dict(v: Version) -> dict[str, object]:
    return {
        "event_id": v.event_id,
        "dataset": v.dataset,
        "partition": v.partition,
        "produced_at": v.produced_at,
        "row_count": v.row_count,
        "location": v.location,
        "columns": None if v.columns is None else [c.model_dump() for c in v.columns],
    }


def _version(d: dict) -> Version:
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
        handle = _loads(m["handle"]) if m["handle"] else None
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
            inputs if inputs is not None else tuple(_version(d) for d in _loads(m["inputs"])),
            Handle(handle["kind"], handle["data"]) if handle else None,
            m["error"],
            m["not_before"],
            m["owner"],
            m["created_at"],
            m["started_at"],
            m["finished_at"],
        )


class StateStore:
    """Opens lazily; `begin()` yields one transaction as a `Tx`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._connect()
        return self._engine

    def _connect(self) -> Engine:
        try:
            if self.url.startswith("sqlite"):
                engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 60})

                @event.listens_for(engine, "connect")
                def _sqlite_connect(dbapi_conn, _record) -> None:
                    dbapi_conn.isolation_level = None  # transactions are begun below, IMMEDIATE
                    cur = dbapi_conn.cursor()
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=NORMAL")
                    cur.execute("PRAGMA busy_timeout=60000")
                    cur.close()

                @event.listens_for(engine, "begin")
                def _sqlite_begin(conn) -> None:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                # orjson for any JSON parameter SQLAlchemy encodes itself (the turn's many-row
                # statements bring theirs encoded already: see _json_rows)
                engine = create_engine(
                    self.url, pool_pre_ping=True, pool_size=10, max_overflow=20, json_serializer=orjson.dumps
                )
            with engine.begin() as conn:
                migrate(conn)
            return engine
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the state store: {_short(exc)}") from exc

    @contextmanager
    def begin(self) -> Iterator[Tx]:
        try:
            with self.engine.begin() as conn:
                yield Tx(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"state store: {_short(exc)}") from exc
        except (psycopg.Error, sqlite3.Error) as exc:  # statements run on the driver (Tx._pg, _sqlite_many)
            raise StoreError(f"state store: {str(exc).splitlines()[0][:500]}") from exc

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:500]


class Tx:
    """One transaction's operations. Timestamps are passed in (an injectable clock)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        # what this transaction encoded or decoded already: an output event is written to the
        # events table and the outbox, a run created here is often claimed here
        self._bodies: dict[str, str] = {}
        self._inputs: dict[str, tuple[Version, ...]] = {}
        self._locked: set[str] = set()  # pools whose lock this transaction holds

    def _body(self, event: CompletionEvent) -> str:
        body = self._bodies.get(event.event_id)
        if body is None:
            body = self._bodies[event.event_id] = event.model_dump_json()
        return body

    def _pg(self, key: Hashable, build: Callable[[], object], params: dict[str, object]) -> psycopg.Cursor:
        """Execute a hot statement on PostgreSQL straight on the driver's connection (inside
        this transaction): the statement is built with SQLAlchemy Core and compiled once per
        `key`, then only its SQL text and parameters travel. Building, cache-keying and
        executing a Core statement cost ~1 ms of Python each time — more than PostgreSQL's
        own work for a turn's few rows, and a loop turn runs about ten of them. Parameters
        are named bindparams; the statement's own literals are compiled in as defaults."""
        entry = _PG_SQL.get(key)
        if entry is None:
            compiled = build().compile(dialect=self.conn.dialect)  # type: ignore[attr-defined]
            if "POSTCOMPILE" in str(compiled):  # an expanding IN: its SQL text is not fixed
                raise StoreError(f"statement {key!r} cannot be compiled once: {compiled}")
            defaults = {k: v for k, v in compiled.params.items() if k not in params}
            entry = _PG_SQL[key] = (str(compiled), defaults)
        sql, defaults = entry
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(sql, {**defaults, **params} if defaults else params)
        return cursor

    def _pg_rows(self, table, rows: list[dict], finish: Callable | None = None):
        """(cursor) INSERT of `rows` into `table` from one JSON recordset parameter (see
        _unnest), `finish` adding ON CONFLICT / RETURNING to the statement."""
        cols = tuple(rows[0])
        types = {c: table.c[c].type for c in cols}

        def build():
            u = _unnest(types)
            stmt = postgresql.insert(table).from_select(list(cols), select(*(u.c[c] for c in cols)))
            return finish(stmt) if finish else stmt

        key = (table.name, cols, getattr(finish, "__code__", None))  # `finish`'s code: its call site
        return self._pg(key, build, {_unnest_tag(types): _json_rows(rows, cols)})

    def _write(self, table, rows: list[dict], finish: Callable | None = None) -> None:
        """INSERT `rows` (no RETURNING), `finish` adding ON CONFLICT to the statement: on
        PostgreSQL one statement over a JSON recordset (`_pg_rows`); on SQLite the statement
        compiled once per shape and the rows handed to the driver's executemany as tuples."""
        if not rows:
            return
        if self.pg:
            self._pg_rows(table, rows, finish)
            return
        self._sqlite_many(
            (table.name, tuple(rows[0]), getattr(finish, "__code__", None)),
            lambda: finish(sqlite.insert(table)) if finish else sqlite.insert(table),
            rows,
        )

    def _insert_new(self, table, key: str, rows: Mapping[str, dict]) -> set[str]:
        """INSERT the `rows` (by the value of their unique `key` column) not stored yet; returns
        the keys inserted now. On PostgreSQL one INSERT … ON CONFLICT DO NOTHING RETURNING (right
        under concurrency: of two writers of one row, exactly one gets it); on SQLite, whose
        transaction holds the write lock, a look for those there, then an insert of the rest."""
        column = table.c[key]
        if self.pg:
            returning = self._pg_rows(
                table, list(rows.values()), lambda stmt: stmt.on_conflict_do_nothing().returning(column)
            )
            return {row[0] for row in returning.fetchall()}
        there = {
            row[0]
            for row in self._lite(
                (table.name, "there"),
                lambda: select(column).where(column.in_(_json_list("keys"))),
                {"keys": _dumps(list(rows))},
            )
        }
        new = [row for k, row in rows.items() if k not in there]
        self._write(table, new, lambda stmt: stmt.on_conflict_do_nothing())
        return {row[key] for row in new}

    def _lite(self, key: Hashable, build: Callable[[], object], params: dict[str, object]) -> sqlite3.Cursor:
        """SQLite's counterpart of `_pg`: compiled once per `key` (named parameters), executed
        on the driver's connection inside this transaction. Lists travel as one JSON text
        parameter read by `json_each` (see `_json_list`), so the SQL text stays fixed where
        an expanding IN would be re-rendered, element by element, at every execution."""
        entry = _SQLITE_NAMED_SQL.get(key)
        if entry is None:
            compiled = build().compile(dialect=_SQLITE_NAMED)  # type: ignore[attr-defined]
            if "POSTCOMPILE" in str(compiled):
                raise StoreError(f"statement {key!r} cannot be compiled once: {compiled}")
            defaults = {k: v for k, v in compiled.params.items() if k not in params}
            entry = _SQLITE_NAMED_SQL[key] = (str(compiled), defaults)
        sql, defaults = entry
        return self.conn.connection.driver_connection.execute(  # type: ignore[union-attr]
            sql, {**defaults, **params} if defaults else params
        )

    def _sqlite_many(self, key: Hashable, build: Callable[[], object], rows: list[dict]) -> None:
        """Execute a statement once per row on SQLite, compiled once per `key` — SQLAlchemy's own
        per-row parameter processing, and compiling each time, cost more than SQLite's work."""
        entry = _SQLITE_SQL.get(key)
        if entry is None:
            compiled = build().compile(dialect=self.conn.dialect, column_keys=list(rows[0]))  # type: ignore[attr-defined]
            order = compiled.positiontup
            fixed = {k: v for k, v in compiled.params.items() if k not in rows[0]}  # the statement's literals
            getter = operator.itemgetter(*order)
            row_of = (lambda r: (getter(r),)) if len(order) == 1 else getter
            entry = _SQLITE_SQL[key] = (str(compiled), row_of, fixed)
        sql, row_of, fixed = entry
        if fixed:
            rows = [{**fixed, **r} for r in rows]
        self.conn.connection.driver_connection.executemany(sql, [row_of(r) for r in rows])  # type: ignore[union-attr]

    def _in(self, column, values: Sequence):
        """`column IN values`: `= ANY(array)` on PostgreSQL (one parameter, a prepared plan)."""
        if self.pg:
            return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
        return column.in_(values)

    def _pairs(
        self, key: str, query, c1, c2, pairs: list[tuple[str, str]], order_by: Sequence[str] = ()
    ) -> Iterator:
        """Rows (tuples) of `query` whose (c1, c2) is one of `pairs`, each pair's rows in
        `order_by` order (columns of `query`).

        On PostgreSQL one statement compiled once per `key`: the pairs as a JSON recordset and,
        for each, a LATERAL lookup — a nested loop over the index whatever the table statistics
        say (a plain join was planned as a hash join over a sequential scan while a fresh
        table's statistics still called it small: 3.7 ms against 1.3 ms for 50 pairs over
        8,000 rows, and growing with the table)."""
        if self.pg:
            if pairs:
                types = {"k1": c1.type, "k2": c2.type}

                def build():
                    u = _unnest(types)
                    # OFFSET 0 keeps the planner from flattening the LATERAL into a plain join
                    hits = query.where(c1 == u.c.k1, c2 == u.c.k2).offset(0).lateral("hits")
                    return (
                        select(*hits.c)
                        .select_from(u)
                        .join(hits, true())
                        .order_by(*(hits.c[name] for name in order_by))
                    )

                rows = _json_rows([{"k1": a, "k2": b} for a, b in pairs], ("k1", "k2"))
                yield from self._pg(("pairs", key), build, {_unnest_tag(types): rows})
            return
        if pairs:
            each = func.json_each(bindparam("pairs")).table_valued("value")
            wanted = select(func.json_extract(each.c.value, "$[0]"), func.json_extract(each.c.value, "$[1]"))
            ordered = query.order_by(*(query.selected_columns[name] for name in order_by))
            yield from self._lite(
                ("pairs", key), lambda: ordered.where(tuple_(c1, c2).in_(wanted)), {"pairs": _dumps(pairs)}
            )

    def _update_active_runs(self, stmt, rows: list[dict], **fixed: object) -> set[tuple[str, int]]:
        """UPDATE the runs whose current attempt (b_id, b_attempt) is still active; returns the
        (run_id, attempt) pairs updated — a stale worker's report changes nothing. On PostgreSQL
        one UPDATE ... FROM a JSON recordset ... RETURNING (the row locks it takes are the check);
        on SQLite, whose transactions hold the write lock from the start, a check then an
        executemany of `stmt`."""
        if not self.pg:
            valid = self._current([(r["b_id"], r["b_attempt"]) for r in rows])
            rows = [r for r in rows if (r["b_id"], r["b_attempt"]) in valid]
            if rows:
                self._sqlite_many(("runs.update", id(stmt), tuple(rows[0])), lambda: stmt, rows)
            return valid
        r = S.runs
        cols = tuple(rows[0])
        types = {k: _BIND_TYPES[k] for k in cols}

        def build():
            u = _unnest(types)
            values = {c: u.c[k] for k, c in _BIND_COLUMNS.items() if k in types}
            if "handle" in values:
                values["handle"] = func.coalesce(values["handle"], r.c.handle)
            return (
                update(r)
                .where(r.c.run_id == u.c.b_id, r.c.attempt == u.c.b_attempt, _states(ACTIVE))
                .values(**values, **fixed)
                .returning(r.c.run_id, r.c.attempt)
            )

        key = ("runs.update", cols, tuple(sorted(fixed.items())))
        updated = self._pg(key, build, {_unnest_tag(types): _json_rows(rows, cols)})
        return {(i, a) for i, a in updated.fetchall()}

    # ------------------------------------------------------------------ events and versions
    def insert_events(self, events: Sequence[CompletionEvent], now: float) -> list[CompletionEvent]:
        """Record events; returns those not seen before (in order, first copy of each).

        On PostgreSQL one INSERT … ON CONFLICT DO NOTHING RETURNING says which were new (and is
        right under concurrency: of two instances recording one event, exactly one gets it)."""
        unique: dict[str, CompletionEvent] = {}
        for e in events:
            unique.setdefault(e.event_id, e)
        if not unique:
            return []
        rows = {row["event_id"]: row for row in self._event_rows(unique.values(), now)}
        new = self._insert_new(S.events, "event_id", rows)
        return [e for e in unique.values() if e.event_id in new]

    def _event_rows(self, events: Iterable[CompletionEvent], now: float) -> list[dict]:
        body = self._body
        return [
            {
                "event_id": e.event_id,
                "dataset": e.dataset,
                "partition_key": pkey(e.partition),
                "status": str(e.status),  # a StrEnum: its str is its value
                "produced_at": e.produced_at.timestamp(),
                "recorded_at": now,
                "body": body(e),
            }
            for e in events
        ]

    def load_snapshot(
        self, spec: PipelineSpec, events: Sequence[CompletionEvent], extra_jobs: Iterable[Key] = ()
    ) -> Snapshot:
        """The recorded state that `readiness.step(spec, snapshot, events)` reads."""
        snap = Snapshot()
        for dataset in readiness.scans_for_events(spec, events):
            self._load_versions(
                snap, self.conn.execute(select(*_version_columns()).where(S.partitions.c.dataset == dataset))
            )
        parts, jobs = readiness.needed_for_events(spec, events, snap)
        extra_jobs = [
            *extra_jobs,
            *self._newest_ran({j for e in events for j in readiness.rerun_jobs(spec, e.dataset)}),
        ]
        for jp in extra_jobs:
            jobs.add(jp)
            parts.update(readiness.needed(spec, *jp))
        t = S.partitions
        wanted = [(d, pkey(p)) for d, p in parts if (d, p) not in snap.latest]
        self._load_versions(
            snap, self._pairs("versions", select(*_version_columns()), t.c.dataset, t.c.partition_key, wanted)
        )
        r_ = S.runs
        q = select(r_.c.job, r_.c.partition_key, r_.c.inputs, r_.c.created_at, r_.c.run_id).where(
            _states(DEAD, negate=True)
        )
        job_keys = [(j, pkey(p)) for j, p in jobs]
        # in creation order: the last live run of a partition wins
        rows = self._pairs("consumed", q, r_.c.job, r_.c.partition_key, job_keys, ("created_at", "run_id"))
        for job, partition_key, inputs, _, _ in rows:
            snap.consumed[(job, unkey(partition_key))] = frozenset(d["event_id"] for d in _loads(inputs))
        return snap

    def _newest_ran(self, jobs: set[str]) -> list[Key]:
        """The newest partition with a live run of each job (what `on_change` inputs re-run)."""
        if not jobs:
            return []
        r_ = S.runs
        q = (
            select(r_.c.job, func.max(r_.c.partition_key))
            .where(r_.c.job.in_(sorted(jobs)), r_.c.state.not_in(DEAD), r_.c.partition_key != "")
            .group_by(r_.c.job)
        )
        return [(job, unkey(p)) for job, p in self.conn.execute(q)]

    def _load_versions(self, snap: Snapshot, rows: Iterable) -> None:
        """Rows of `_version_columns()` into the snapshot."""
        latest = snap.latest
        for dataset, partition_key, event_id, produced_at, row_count, location, columns in rows:
            partition = unkey(partition_key)
            latest[(dataset, partition)] = Version(
                event_id,
                dataset,
                partition,
                produced_at,
                row_count,
                location,
                None if not columns else tuple(Column(**c) for c in _loads(columns)),
            )

    def save_versions(self, versions: Iterable[Version], now: float) -> None:
        """Upsert each version where it is newer than the stored one (safe under concurrency)."""
        rows = [
            {
                "dataset": v.dataset,
                "partition_key": pkey(v.partition),
                "event_id": v.event_id,
                "produced_at": v.produced_at,
                "row_count": v.row_count,
                "location": v.location,
                "columns": None if v.columns is None else _dumps([c.model_dump() for c in v.columns]),
                "updated_at": now,
            }
            for v in versions
        ]
        if not rows:
            return
        t = S.partitions

        def newer(stmt):
            ex = stmt.excluded
            return stmt.on_conflict_do_update(
                index_elements=[t.c.dataset, t.c.partition_key],
                set_={
                    c: ex[c]
                    for c in ("event_id", "produced_at", "row_count", "location", "columns", "updated_at")
                },
                where=tuple_(t.c.produced_at, t.c.event_id) < tuple_(ex.produced_at, ex.event_id),
            )

        self._write(t, rows, newer)

    # ------------------------------------------------------------------ runs
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
        for c in cands:
            generation = 0
            if rerun:
                top = self.conn.execute(
                    select(func.max(S.runs.c.generation)).where(
                        S.runs.c.job == c.job,
                        S.runs.c.partition_key == pkey(c.partition),
                        S.runs.c.input_key == c.input_key,
                    )
                ).scalar()
                generation = 0 if top is None else top + 1
            run_id = run_id_for(c.job, c.partition, c.input_key, generation)
            if run_id in rows:
                continue
            state = "blocked" if c.violation else "ready"
            pool = pools[c.job]
            start = state == "ready" and room.get(pool, 0) > 0
            if start:
                room[pool] -= 1
            row = {
                "run_id": run_id,
                "job": c.job,
                "partition_key": pkey(c.partition),
                "input_key": c.input_key,
                "generation": generation,
                "state": "starting" if start else state,
                "pool": pool,
                "attempt": 1 if start else 0,
                "max_attempts": budgets[c.job],
                "budget": budgets[c.job],
                "inputs": _dumps([_version_dict(v) for v in c.inputs]),
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
        inserted = self._insert_new(S.runs, "run_id", rows)
        return [RunRow.from_dict(r, self._inputs[run_id]) for run_id, r in rows.items() if run_id in inserted]

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
        q = select(func.count()).select_from(S.runs).where(_states(states))
        if pool is not None:
            q = q.where(S.runs.c.pool == pool)
        if due_before is not None:
            q = q.where(S.runs.c.not_before <= due_before)
        return int(self.conn.execute(q).scalar() or 0)

    def next_due(self) -> float | None:
        q = select(func.min(S.runs.c.not_before)).where(_states(["ready"]))
        return self.conn.execute(q).scalar()

    def _pool_lock(self, pool: str, wait: bool) -> bool:
        """The pool's claim lock until this transaction ends (PostgreSQL; SQLite's transactions
        hold the write lock already). Taken again in the same transaction, it is granted."""
        if not self.pg or pool in self._locked:
            return True
        lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        got = self._pg(
            ("pool.lock", lock), lambda: text(f"SELECT {lock}(hashtext(:p))"), {"p": "coord-pool:" + pool}
        ).fetchone()[0]
        if got or wait:
            self._locked.add(pool)
            return True
        return False

    def pool_room(self, pool: str, size: int, now: float) -> int:
        """Free slots of `pool` for runs created in this transaction: 0 while due ready runs wait
        (they go first, through `claim`) or while another instance holds the pool's lock."""
        if not self._pool_lock(pool, wait=False):
            return 0
        r = S.runs

        def build():
            p, t = bindparam("pool", type_=r.c.pool.type), bindparam("now", type_=r.c.not_before.type)
            waiting = exists().where(_states(["ready"]), r.c.pool == p, r.c.not_before <= t)
            active = select(func.count()).select_from(r).where(_states(ACTIVE), r.c.pool == p)
            return select(waiting, active.scalar_subquery())

        # one round trip for both (the lock above is a statement of its own: a statement's
        # snapshot is taken before it runs, so a lock taken inside one would not cover it)
        params = {"pool": pool, "now": now}
        ready_due, running = (self._pg if self.pg else self._lite)("pool.room", build, params).fetchone()
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
        r = S.runs
        if not self._pool_lock(pool, wait):
            return None
        if self.pg:
            params = {"pool": pool, "size": size, "now": now, "owner": owner}
            if limit is not None:
                params["limit"] = limit
            limited = limit is not None
            cursor = self._pg(("claim", limited), lambda: _claim_statement(limited), params)
            names = [c.name for c in cursor.description]  # type: ignore[union-attr]
            rows: Iterable[Mapping] = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        else:
            free = size - self.count_runs(ACTIVE, pool)
            if limit is not None:
                free = min(free, limit)
            if free <= 0:
                return []
            pick = list(
                self.conn.execute(
                    select(r.c.run_id)
                    .where(_states(["ready"]), r.c.pool == pool, r.c.not_before <= now)
                    .order_by(r.c.not_before, r.c.created_at)
                    .limit(free)
                ).scalars()
            )
            if not pick:
                return []
            rows = self.conn.execute(
                update(r)
                .where(r.c.run_id.in_(pick), r.c.state == "ready")
                .values(state="starting", attempt=r.c.attempt + 1, owner=owner, started_at=now)
                .values(handle=None, error=None)
                .returning(*r.c)
            ).mappings()
        known = self._inputs
        claimed = (RunRow.from_dict(m, known.get(m["run_id"])) for m in rows)
        return sorted(claimed, key=lambda run: (run.not_before, run.created_at, run.run_id))

    def _current(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which (run_id, attempt) pairs are the current, active attempt of their run."""
        r = S.runs
        out: set[tuple[str, int]] = set()
        ids = sorted({k[0] for k in keys})
        if self.pg:
            q = select(r.c.run_id, r.c.attempt).where(self._in(r.c.run_id, ids), _states(ACTIVE))
            out.update((i, a) for i, a in self.conn.execute(q.with_for_update()))
        else:
            q = select(r.c.run_id, r.c.attempt).where(r.c.run_id.in_(_json_list("ids")), _states(ACTIVE))
            out.update((i, a) for i, a in self._lite("runs.current", lambda: q, {"ids": _dumps(ids)}))
        return {k for k in keys if k in out}

    def set_running_many(self, items: Sequence[tuple[str, int, Handle]], now: float) -> set[str]:
        """Store the handles of started attempts; returns the run ids updated (stale ones are not)."""
        if not items:
            return set()
        rows = [{"b_id": i, "b_attempt": a, "b_handle": _handle_json(h)} for i, a, h in items]
        valid = self._update_active_runs(_SET_RUNNING, rows, state="running")
        if not valid:
            return set()
        self._attempts(
            [
                {
                    "run_id": i,
                    "attempt": a,
                    "state": "running",
                    "started_at": now,
                    "finished_at": None,
                    "error": None,
                    "log_path": None,
                }
                for i, a in valid
            ]
        )
        return {i for i, _ in valid}

    def set_running(self, run_id: str, attempt: int, handle: Handle, now: float) -> bool:
        return bool(self.set_running_many([(run_id, attempt, handle)], now))

    def finish_many(self, items: Sequence[Finish], now: float) -> set[str]:
        """End attempts: `succeeded`, `failed` or `blocked`, or back to `ready` at `retry_at`.

        Only the attempt that is current and active may finish (a stale worker changes nothing);
        returns the run ids that did.
        """
        if not items:
            return set()
        valid = self._update_active_runs(
            _FINISH,
            [
                {
                    "b_id": f.run_id,
                    "b_attempt": f.attempt,
                    "b_error": f.error,
                    "b_state": "ready" if f.retry_at is not None else f.state,
                    "b_not_before": f.retry_at if f.retry_at is not None else 0.0,
                    "b_finished": None if f.retry_at is not None else now,
                    "b_handle": None if f.handle is None else _handle_json(f.handle),
                }
                for f in items
            ],
        )
        done = [f for f in items if (f.run_id, f.attempt) in valid]
        if not done:
            return set()
        self._attempts(
            [
                {
                    "run_id": f.run_id,
                    "attempt": f.attempt,
                    "state": f.state,
                    "started_at": now,
                    "finished_at": now,
                    "error": f.error,
                    "log_path": f.log_path,
                    "details": json.dumps(dict(f.details), default=str) if f.details else None,
                }
                for f in done
            ]
        )
        return {f.run_id for f in done}

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

        self._write(a, rows, upsert)

    def attempts(self, run_id: str) -> list[dict]:
        q = select(S.attempts).where(S.attempts.c.run_id == run_id).order_by(S.attempts.c.attempt)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def active_runs(self, owner: str) -> list[RunRow]:
        q = select(S.runs).where(S.runs.c.state.in_(ACTIVE), S.runs.c.owner == owner)
        return [RunRow.of(r) for r in self.conn.execute(q)]

    def retry(self, run_id: str, now: float) -> RunRow:
        """Make a failed or blocked run ready again, with a fresh retry budget."""
        run = self.get_run(run_id)
        if run is None:
            raise StoreError(f"no run {run_id!r}")
        if run.state not in DEAD:
            raise StoreError(f"run {run_id} is {run.state}; only failed or blocked runs can be retried")
        r = S.runs
        self.conn.execute(
            update(r)
            .where(r.c.run_id == run_id, r.c.state.in_(DEAD))
            .values(state="ready", not_before=now, max_attempts=run.attempt + run.budget, finished_at=None)
        )
        return self.get_run(run_id)  # type: ignore[return-value]

    def latest_versions(self, dataset: str | None = None) -> list[Version]:
        t = S.partitions
        q = select(t).order_by(t.c.dataset, t.c.partition_key)
        if dataset:
            q = q.where(t.c.dataset == dataset)
        out = []
        for r in self.conn.execute(q):
            m = r._mapping
            out.append(
                Version(
                    m["event_id"],
                    m["dataset"],
                    unkey(m["partition_key"]),
                    m["produced_at"],
                    m["row_count"],
                    m["location"],
                )
            )
        return out

    def count_events(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(S.events)).scalar() or 0)

    # ------------------------------------------------------------------ outbox
    def outbox_add(self, events: Iterable[CompletionEvent], now: float) -> None:
        rows = [
            {"event_id": e.event_id, "body": self._body(e), "created_at": now, "sent_at": None}
            for e in events
        ]
        self._write(S.outbox, rows, lambda stmt: stmt.on_conflict_do_nothing())

    def outbox_pending(self, limit: int = 500) -> list[tuple[int, CompletionEvent]]:
        o = S.outbox
        q = select(o.c.id, o.c.body).where(o.c.sent_at.is_(None)).order_by(o.c.id).limit(limit)
        if self.pg:
            q = q.with_for_update(skip_locked=True)
        return [(i, CompletionEvent.model_validate_json(b)) for i, b in self.conn.execute(q)]

    def outbox_mark_sent(self, ids: Sequence[int]) -> None:
        """Sent events leave the outbox (the events table keeps them): a DELETE writes no index
        entry where an UPDATE of sent_at wrote three, and the outbox stays as small as what is
        in flight instead of growing with every event ever emitted."""
        o = S.outbox
        for chunk in [list(ids)] if self.pg else _chunks(list(ids)):
            self.conn.execute(delete(o).where(self._in(o.c.id, chunk)))

    def outbox_mark_sent_events(self, event_ids: Sequence[str]) -> None:
        """The same by event id (what the engine knows of the events it published itself)."""
        o = S.outbox
        if self.pg:
            ids = bindparam("ids", type_=ARRAY(o.c.event_id.type))
            sent = list(event_ids)
            self._pg("outbox.sent", lambda: delete(o).where(o.c.event_id == any_(ids)), {"ids": sent})
            return
        self._lite(
            "outbox.sent",
            lambda: delete(o).where(o.c.event_id.in_(_json_list("ids"))),
            {"ids": _dumps(list(event_ids))},
        )

    def outbox_count(self) -> int:
        o = S.outbox
        return int(
            self.conn.execute(select(func.count()).select_from(o).where(o.c.sent_at.is_(None))).scalar() or 0
        )


@dataclass(frozen=True)
class Finish:
    run_id: str
    attempt: int
    state: str
    error: str | None = None
    log_path: str | None = None
    retry_at: float | None = None
    details: Mapping[str, object] | None = None
    handle: Handle | None = None  # an attempt that started and ended between two writes


_SET_RUNNING = (
    update(S.runs)
    .where(S.runs.c.run_id == bindparam("b_id"), S.runs.c.attempt == bindparam("b_attempt"))
    .values(state="running", handle=bindparam("b_handle"))
)
_FINISH = (
    update(S.runs)
    .where(S.runs.c.run_id == bindparam("b_id"), S.runs.c.attempt == bindparam("b_attempt"))
    .values(
        state=bindparam("b_state"),
        handle=func.coalesce(bindparam("b_handle"), S.runs.c.handle),
        error=bindparam("b_error"),
        not_before=bindparam("b_not_before"),
        finished_at=bindparam("b_finished"),
    )
)


# the parameters of the two run updates above: their types and the columns they set
_BIND_TYPES = {
    "b_id": S.runs.c.run_id.type,
    "b_attempt": S.runs.c.attempt.type,
    "b_handle": S.runs.c.handle.type,
    "b_state": S.runs.c.state.type,
    "b_error": S.runs.c.error.type,
    "b_not_before": S.runs.c.not_before.type,
    "b_finished": S.runs.c.finished_at.type,
}
_BIND_COLUMNS = {
    "b_handle": "handle",
    "b_state": "state",
    "b_error": "error",
    "b_not_before": "not_before",
    "b_finished": "finished_at",
}


def _claim_statement(limited: bool):
    """The claim on PostgreSQL: the pool's free slots, the pick and the move in one statement
    (one round trip). No FOR UPDATE: every claimer of the pool holds its lock, and only claims
    move ready runs (the UPDATE checks the state again); MATERIALIZED: the pick is evaluated
    once (a plain IN-subquery with LIMIT may be evaluated twice and claim beyond the pool)."""
    r = S.runs
    pool = bindparam("pool", type_=r.c.pool.type)
    now = bindparam("now", type_=r.c.not_before.type)
    active = select(func.count()).select_from(r).where(_states(ACTIVE), r.c.pool == pool)
    free = func.greatest(0, bindparam("size", type_=r.c.attempt.type) - active.scalar_subquery())
    if limited:
        free = func.least(free, bindparam("limit", type_=r.c.attempt.type))
    pick = (
        select(r.c.run_id)
        .where(_states(["ready"]), r.c.pool == pool, r.c.not_before <= now)
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
        )
        .returning(*r.c)
    )


def _states(states: Sequence[str], negate: bool = False):
    """`state [NOT] IN (...)` with the states as literals (they are the module's constants)."""
    listed = ", ".join(f"'{s}'" for s in states if s.isidentifier())
    return text(f"coord_runs.state {'NOT IN' if negate else 'IN'} ({listed})")


def _handle_json(handle: Handle) -> str:
    return _dumps({"kind": handle.kind, "data": dict(handle.data)})


_PG_SQL: dict[Hashable, tuple[str, dict[str, object]]] = {}  # Tx._pg: key → (SQL text, defaults)
_SQLITE_SQL: dict[Hashable, tuple[str, Callable, dict[str, object]]] = {}  # Tx._sqlite_many
_SQLITE_NAMED = pysqlite.dialect(paramstyle="named")
_SQLITE_NAMED_SQL: dict[Hashable, tuple[str, dict[str, object]]] = {}  # Tx._lite


def _json_list(name: str):
    """`SELECT value FROM json_each(:name)`: a list given as one JSON text parameter (SQLite)."""
    return select(func.json_each(bindparam(name)).table_valued("value").c.value)


def _version_columns():
    """What a partition version is read as (Tx._load_versions)."""
    t = S.partitions
    c = t.c
    return (c.dataset, c.partition_key, c.event_id, c.produced_at, c.row_count, c.location, c.columns)


def _unnest_tag(types: dict[str, object]) -> str:
    return "rows_" + "_".join(types)[:40]


def _json_rows(rows: list[dict], cols: Sequence[str]) -> Json:
    """The JSON recordset parameter (orjson; the rows as they are when they have just `cols`)."""
    if len(rows[0]) != len(cols):
        rows = [{c: r[c] for c in cols} for r in rows]
    return Json(rows, dumps=_dumps)


def _unnest(types: dict[str, object]):
    """PostgreSQL rows from one JSON parameter: `json_to_recordset(:rows_...) AS (name type, ...)`,
    the parameter named by `_unnest_tag(types)` and given by `_json_rows`.

    One parameter whatever the row count, so a fixed SQL text (and plan); JSON because psycopg
    escapes every element of a text array with a regular expression, which costs more than the
    statement itself for event bodies."""
    cols = [column(c, t) for c, t in types.items()]
    tag = bindparam(_unnest_tag(types), type_=JSON)
    return func.json_to_recordset(tag).table_valued(*cols).render_derived(with_types=True)


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def now() -> float:
    return time.time()
