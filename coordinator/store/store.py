"""The state store: events, partition versions, runs, attempts and the outbox, in one database.

SQLite (a file under the coordinator's home) by default, PostgreSQL in production; the same
SQLAlchemy Core statements serve both. Every change the engine makes is one `Tx` (one
database transaction) so that "record events + create runs + queue outbox events" and
"finish a run + record its outputs + queue them" are atomic. Driver and SQLAlchemy errors are
mapped to StoreError here, at the store's edge, and never leave it.

A `Tx` is composed of the store's rooms, each a module of its own:

    runs.py     runs and attempts: insert, pool room, claim, set running, finish, retry
    events.py   events, partition versions, the readiness snapshot
    outbox.py   the coordinator's own events until they are published
    views.py    the read side of history, lineage, the UI and the metrics
    retention.py  old history deleted in bounded slices, the lineage of what is live kept
    alerts.py   the alerts' records
    rows.py     RunRow, Finish, versions as stored, the key conventions
    sql.py      how a statement runs on PostgreSQL and on SQLite (and why, as measured)
    deferred.py what a PostgreSQL transaction sends with its next statement (the lease's
                fence, writes nobody reads the answer of): fewer round trips
"""

from __future__ import annotations

import select
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError

from coordinator.errors import StoreError
from coordinator.readiness import Version
from coordinator.store.alerts import AlertRecords
from coordinator.store.deferred import PENDING
from coordinator.store.events import Events
from coordinator.store.migrations import migrate
from coordinator.store.outbox import Outbox
from coordinator.store.retention import Retention
from coordinator.store.rows import ACTIVE, DEAD, OPEN, Finish, RunRow, pkey, run_id_for, unkey
from coordinator.store.runs import Runs
from coordinator.store.sql import Sql
from coordinator.store.views import Views

__all__ = [
    "ACTIVE",
    "DEAD",
    "OPEN",
    "Finish",
    "RunRow",
    "StateStore",
    "Tx",
    "pkey",
    "run_id_for",
    "unkey",
]


def use_wal(cur: sqlite3.Cursor, within_s: float = 60.0) -> None:
    """Put the SQLite file in WAL mode, once: the mode is the file's and persists, so a file
    already in it is left alone. Changing it needs the file to itself, and SQLite answers
    "database is locked" at once, without waiting in its busy handler, while another connection
    has a transaction open on it (two processes opening a fresh store together: the service and
    a worker, a CLI command beside a running coordinator); so the change is tried again until
    the other is done, for up to `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _alive_or_replaced(dbapi_conn: psycopg.Connection, _record, _proxy) -> None:
    """A pooled PostgreSQL connection as it is checked out: one the server has closed (a restart,
    an administrator's termination, an idle timeout) is replaced — SQLAlchemy's pool takes a new
    one when this raises DisconnectionError — with no round trip for one that is fine. An idle
    connection has nothing to read; a server ending it sends its reason and closes the socket,
    which makes it readable. So a readable (or known broken) connection is replaced, whatever it
    holds. In the launch path's first transaction a ping (`pool_pre_ping`, "SELECT 1") was a
    round trip of its own before the work's first statement: 0.3-0.5 ms of ~4.9 after an idle
    pause (bench/txn.py)."""
    if dbapi_conn.closed or dbapi_conn.pgconn.status != psycopg.pq.ConnStatus.OK:
        raise DisconnectionError("the connection is closed")
    idle = select.poll()  # poll, not select: the socket's number may be past select's 1,024
    idle.register(dbapi_conn.pgconn.socket, select.POLLIN)
    if idle.poll(0):
        raise DisconnectionError("the server sent something on an idle connection (it ended it)")


def _settle_first(conn: Connection, *_args) -> None:
    """Before a statement SQLAlchemy runs itself, what the transaction left to travel with its
    next statement runs (deferred.py): that statement may read it."""
    pending = conn.info.get(PENDING)
    if pending is not None:
        pending.settle()


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
                    cur.execute("PRAGMA busy_timeout=60000")
                    use_wal(cur)
                    cur.execute("PRAGMA synchronous=NORMAL")
                    cur.close()

                @event.listens_for(engine, "begin")
                def _sqlite_begin(conn) -> None:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                # orjson for any JSON parameter SQLAlchemy encodes itself (the turn's many-row
                # statements bring theirs encoded already: see sql.py)
                engine = create_engine(self.url, pool_size=10, max_overflow=20, json_serializer=orjson.dumps)
                event.listen(engine, "checkout", _alive_or_replaced)
                event.listen(engine, "before_cursor_execute", _settle_first)
            with engine.begin() as conn:
                migrate(conn)
            return engine
        except DRIVER_ERRORS as exc:
            raise store_error(exc, "cannot open the state store") from exc

    @contextmanager
    def begin(self) -> Iterator[Tx]:
        try:
            with self.engine.begin() as conn:
                tx = Tx(conn)
                try:
                    yield tx
                    tx.sql.settle()  # what waited to travel with a later statement (deferred.py)
                finally:
                    tx.sql.forget()
        except DRIVER_ERRORS as exc:  # psycopg and sqlite3 too: statements run on the driver (sql.py)
            raise store_error(exc) from exc

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# what the store's edge catches: SQLAlchemy's errors and those of the drivers sql.py calls directly
DRIVER_ERRORS = (SQLAlchemyError, psycopg.Error, sqlite3.Error)


def store_error(exc: BaseException, doing: str = "state store") -> StoreError:
    """A driver or SQLAlchemy exception as the store's own: its first line, the driver's own
    message when SQLAlchemy wraps one (tests/unit/test_error_mapping.py checks every class)."""
    return StoreError(f"{doing}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).splitlines() or [type(exc).__name__])[0][:500]


class Tx(Runs, Events, Outbox, Views, AlertRecords, Retention):
    """One transaction's operations, composed of the store's rooms (see the module docstring).
    Timestamps are passed in (an injectable clock). Only the store's own modules use `conn`
    and `sql`; everything else calls the methods."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sql = Sql.of(conn)
        self.pg = conn.dialect.name == "postgresql"  # for rooms with DDL or locks of their own
        # what this transaction encoded or decoded already: an output event is written to the
        # events table and the outbox, a run created here is often claimed here
        self._bodies: dict[str, str] = {}
        self._inputs: dict[str, tuple[Version, ...]] = {}

    def settle(self) -> None:
        """Run now what waits to travel with this transaction's next statement on PostgreSQL
        (the lease's fence, writes nobody reads the answer of: deferred.py); the commit does it
        anyway, a benchmark timing the fence alone calls it."""
        self.sql.settle()
