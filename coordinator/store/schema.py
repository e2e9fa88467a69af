"""The state store's tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

    coord_events      every event ever recorded, unique by event id (replays are no-ops)
    coord_partitions  the latest succeeded version of each dataset partition, with its schema
    coord_runs        one row per (job, partition, input set, generation): state, attempts, handle
    coord_attempts    one row per earlier attempt of a run: when, how it ended, its log (the
                      current attempt is the run's own row: store/runs.py, `attempts`)
    coord_outbox      events to publish, written in the same transaction as the state change;
                      a sent event leaves it (coord_events keeps every event)
    coord_dead_letters one row per bus message refused, by (group, topic, partition, offset):
                      written to the dead-letter topic, or not writable there (and why)
    coord_leases      one row per coordinator process: its claim to be alive (see store/leases.py)
    coord_audit       one row per operator action (retry, rerun, cancel, backfill, API publish):
                      who (a token's name, or cli:<user>), when, on what (see store/audit.py)

Partition keys are stored as '' for "unpartitioned" so that they can sit in unique keys.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()
_READY = text("state = 'ready'")
_ACTIVE = text("state IN ('starting', 'running')")

_ID = BigInteger().with_variant(Integer(), "sqlite")

schema_version = Table(
    "coord_schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)

events = Table(
    "coord_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("dataset", String(500), nullable=False),
    Column("partition_key", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("produced_at", Float, nullable=False),
    Column("recorded_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    # by dataset and partition, not by dataset alone (which is ~80 bytes an event smaller, with
    # B-tree deduplication): a lookup of one dataset partition (a run's outputs, its versions, the
    # staleness view's histories) would read every event retention keeps of that dataset
    Index("ix_coord_events_dp", "dataset", "partition_key"),
)

partitions = Table(
    "coord_partitions",
    metadata,
    Column("dataset", String(500), primary_key=True),
    Column("partition_key", String(200), primary_key=True),
    Column("event_id", String(200), nullable=False),
    Column("produced_at", Float, nullable=False),
    Column("row_count", BigInteger),
    Column("location", Text),
    Column("columns", Text),
    Column("updated_at", Float, nullable=False),
)

runs = Table(
    "coord_runs",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("job", String(500), nullable=False),
    Column("partition_key", String(200), nullable=False),
    Column("input_key", String(40), nullable=False),  # '': the inputs' hash, read from them (rows.py)
    Column("generation", Integer, nullable=False, default=0),
    Column("state", String(20), nullable=False),
    Column("pool", String(200), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("budget", Integer, nullable=False),
    Column("inputs", Text, nullable=False),
    Column("handle", Text),
    Column("error", Text),
    Column("not_before", Float, nullable=False, default=0.0),
    Column("owner", String(200)),  # the lease id (name#epoch) of the instance that runs it
    Column("adopted_from", String(200)),  # the lease it was last adopted from, if any
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    # the current attempt's log and launcher details (migration 9): an attempt leaves a row in
    # coord_attempts only when the run goes on to another, so a run of one attempt is one row
    Column("log_path", Text),
    Column("details", Text),
    # no unique key on (job, partition_key, input_key, generation): the run id is a hash of
    # exactly these (rows.run_id_for), so the primary key keeps them unique; this index is the
    # (job, partition) lookup the key's prefix served, at half its size (migration 9)
    Index("ix_coord_runs_job_partition", "job", "partition_key"),
    # partial: a run leaves them when it starts and ends, so most state changes write no entry
    Index("ix_coord_runs_ready", "pool", "not_before", postgresql_where=_READY, sqlite_where=_READY),
    Index("ix_coord_runs_active", "pool", postgresql_where=_ACTIVE, sqlite_where=_ACTIVE),
)

attempts = Table(
    "coord_attempts",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("state", String(20), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("error", Text),
    Column("log_path", Text),
    Column("details", Text),  # JSON: what the launcher reported (model version, push counts, app id)
)

outbox = Table(
    "coord_outbox",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("event_id", String(200), nullable=False, unique=True),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),  # NULL: sent events leave the table (migration 5), the id orders it
)

leases = Table(
    "coord_leases",
    metadata,
    Column("lease_id", String(220), primary_key=True),  # name#epoch: what runs' owner holds
    Column("name", String(200), nullable=False),
    Column("epoch", Integer, nullable=False),  # the fencing number: one more at each start of a name
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_start", String(40)),  # the process's start time, against PID reuse
    Column("state", String(20), nullable=False),  # live | released | adopted | ended
    Column("started_at", Float, nullable=False),
    Column("renewed_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("adopted_by", String(220)),
    Column("note", Text),  # how it ended: "released, 2 runs left running", "adopted by x#3"
    UniqueConstraint("name", "epoch", name="uq_coord_leases_name_epoch"),
)

dead_letters = Table(
    "coord_dead_letters",
    metadata,
    Column("consumer_group", String(255), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("reason", String(100), nullable=False),
    Column("detail", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64)),
    Column("state", String(20), nullable=False),  # written | unwritable
    Column("error", Text),  # why the dead-letter topic did not take it
    Column("recorded_at", Float, nullable=False),
)

audit = Table(
    "coord_audit",
    metadata,
    Column("audit_id", _ID, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(40), nullable=False),  # retry | rerun | cancel | backfill | publish
    Column("run_id", String(40)),
    Column("job", String(500)),  # the job, or for a publish the dataset
    Column("partition_key", String(200)),
    Column("detail", Text),
    Index("ix_coord_audit_run", "run_id"),
)
