"""Versioned schema migrations, applied in order under a lock at start-up.

Each step is (version, function of a Connection). The applied versions are recorded in
coord_schema_version; a store opened by an older build than its schema refuses to run.
Several coordinators starting at once are safe: PostgreSQL serialises them with an advisory
lock, SQLite with its write lock (every transaction is BEGIN IMMEDIATE, see store.py).

Step 1 creates the tables as first released; a later change to schema.py is a new numbered
step here with its own explicit DDL, never an edit of an applied step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy import Connection, MetaData, Table, bindparam, inspect, select, text, update

from coordinator.errors import StoreError
from coordinator.store import rows, schema

_LOCK_ID = 7_245_001


def _v1(conn: Connection) -> None:
    tables = [schema.events, schema.partitions, schema.runs, schema.attempts, schema.outbox]
    schema.metadata.create_all(conn, tables=tables)


def _v2(conn: Connection) -> None:
    # Status views list runs per job by recency; the claim index does not serve that.
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_coord_runs_job_created ON coord_runs (job, created_at)"))


def _v3(conn: Connection) -> None:
    # Attempts keep the launcher's details. Stores created by step 1 of this build already
    # have the column (step 1 creates the tables from schema.py), older ones get it here.
    if "details" not in {c["name"] for c in inspect(conn).get_columns("coord_attempts")}:
        conn.execute(text("ALTER TABLE coord_attempts ADD COLUMN details TEXT"))


def _v4(conn: Connection) -> None:
    # Fewer index writes per run: (job, partition_key) is the unique key's prefix already, and
    # the claim index becomes two partial ones (ready runs by pool and due time, active runs by
    # pool) that a run is in only while it waits or runs. Idempotent: stores created by step 1
    # of this build have the new indexes already.
    conn.execute(text("DROP INDEX IF EXISTS ix_coord_runs_jp"))
    conn.execute(text("DROP INDEX IF EXISTS ix_coord_runs_claim"))
    conn.execute(
        text(
            "CREATE INDEX IF NOT EXISTS ix_coord_runs_ready ON coord_runs (pool, not_before)"
            " WHERE state = 'ready'"
        )
    )
    conn.execute(
        text(
            "CREATE INDEX IF NOT EXISTS ix_coord_runs_active ON coord_runs (pool)"
            " WHERE state IN ('starting', 'running')"
        )
    )


def _v5(conn: Connection) -> None:
    # Sent events leave the outbox from now on (the events table keeps them); drop those that
    # earlier builds kept, marked sent.
    conn.execute(text("DELETE FROM coord_outbox WHERE sent_at IS NOT NULL"))


def _v7(conn: Connection) -> None:
    # Instance leases (high availability): a lease row per coordinator process, and runs remember
    # the lease they were adopted from. Idempotent: stores created by step 1 of this build have
    # the column already.
    schema.metadata.create_all(conn, tables=[schema.leases])
    if "adopted_from" not in {c["name"] for c in inspect(conn).get_columns("coord_runs")}:
        conn.execute(text("ALTER TABLE coord_runs ADD COLUMN adopted_from VARCHAR(200)"))


def _v6(conn: Connection) -> None:
    # Refused bus messages, one row per source offset: the dedupe that keeps a replayed message
    # from being dead-lettered twice, and the record of those the dead-letter topic would not take.
    schema.metadata.create_all(conn, tables=[schema.dead_letters])


def _v8(conn: Connection) -> None:
    # The audit of operator actions: who retried, re-ran, cancelled, backfilled or published, when.
    schema.metadata.create_all(conn, tables=[schema.audit])


def _v9(conn: Connection) -> None:
    # Fewer bytes per event (bench/scale.py measures them). The runs' unique key on (job,
    # partition_key, input_key, generation) goes: the run id is a hash of exactly these, so the
    # primary key keeps them unique, and a (job, partition_key) index serves the lookups its
    # prefix served (on SQLite the table is copied without it). New runs store their input key
    # as '' (a hash of the inputs' event ids, read from them: rows.RunRow). The outbox's
    # (sent_at, id) index goes: sent events leave the table, the primary key orders what is
    # left. A run's current attempt is kept on its row (store/runs.py). Event bodies keep only
    # what the events' columns do not hold (rows.event_body).
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE coord_runs DROP CONSTRAINT IF EXISTS uq_coord_runs_inputs"))
    elif "uq_coord_runs_inputs" in {u["name"] for u in inspect(conn).get_unique_constraints("coord_runs")}:
        _copy_sqlite_runs(conn)
    else:
        conn.execute(text("DROP INDEX IF EXISTS uq_coord_runs_inputs"))  # were it an index
    conn.execute(
        text("CREATE INDEX IF NOT EXISTS ix_coord_runs_job_partition ON coord_runs (job, partition_key)")
    )
    conn.execute(text("DROP INDEX IF EXISTS ix_coord_outbox_pending"))
    # the current attempt's log and details on the run's row (attempts written before stay)
    have = {c["name"] for c in inspect(conn).get_columns("coord_runs")}
    for name in ("log_path", "details"):
        if name not in have:
            conn.execute(text(f"ALTER TABLE coord_runs ADD COLUMN {name} TEXT"))
    _trim_event_bodies(conn)


def _copy_sqlite_runs(conn: Connection) -> None:
    """coord_runs without the unique key, on SQLite: it cannot drop a table's constraint, so the
    table is copied (its documented way: a new table, the rows, the old one dropped, the new one
    renamed, its indexes made again)."""
    have = {c["name"] for c in inspect(conn).get_columns("coord_runs")}
    copy = Table("coord_runs_v9", MetaData(), *(c._copy() for c in schema.runs.columns))
    copy.create(conn)
    names = ", ".join(c.name for c in schema.runs.columns if c.name in have)
    conn.execute(text(f"INSERT INTO coord_runs_v9 ({names}) SELECT {names} FROM coord_runs"))
    conn.execute(text("DROP TABLE coord_runs"))
    conn.execute(text("ALTER TABLE coord_runs_v9 RENAME TO coord_runs"))
    for index in schema.runs.indexes:
        index.create(conn, checkfirst=True)
    _v2(conn)


def _trim_event_bodies(conn: Connection, page: int = 5000) -> None:
    """Every stored event's body as `rows.event_body` writes it, a page of event ids at a time."""
    e = schema.events
    columns = [e.c[name] for name in rows.EVENT_COLUMNS]
    after = ""
    while True:
        q = select(*columns).where(e.c.event_id > after).order_by(e.c.event_id).limit(page)
        found = conn.execute(q).all()
        if not found:
            return
        after = found[-1][0]
        changed = []
        for row in found:
            try:
                body = rows.event_body(rows.event_of(row))
            except ValidationError:  # not an event this build reads: left as it is
                continue
            if body != row[-1]:
                changed.append({"b_id": row[0], "b_body": body})
        if changed:
            conn.execute(
                update(e).where(e.c.event_id == bindparam("b_id")).values(body=bindparam("b_body")), changed
            )


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _v1),
    (2, _v2),
    (3, _v3),
    (4, _v4),
    (5, _v5),
    (6, _v6),
    (7, _v7),
    (8, _v8),
    (9, _v9),
]
LATEST = max(version for version, _ in MIGRATIONS)  # steps 6 and 7 were written side by side


def migrate(conn: Connection) -> list[int]:
    """Apply the missing steps inside the caller's transaction; returns the versions applied."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    schema.metadata.create_all(conn, tables=[schema.schema_version])
    done = set(conn.execute(select(schema.schema_version.c.version)).scalars())
    if done and max(done) > LATEST:
        raise StoreError(f"the state store has schema version {max(done)}, newer than this build's {LATEST}")
    applied = []
    for version, step in MIGRATIONS:
        if version in done:
            continue
        step(conn)
        conn.execute(schema.schema_version.insert().values(version=version, applied_at=time.time()))
        applied.append(version)
    return applied
