"""bench/latency.py's baselines: the database alone writing what one event and its run leave in
the store (PostgreSQL by COPY, SQLite by executemany), a ceiling for the coordinator's loop."""

from __future__ import annotations

import time

from latency_setup import Backend, event

from coordinator.store.store import StateStore

_RUN_COLUMNS = (
    "run_id, job, partition_key, input_key, generation, state, pool, attempt, max_attempts, budget,"
    " inputs, not_before, created_at"
)


def _copy(cur, table_columns: str, rows) -> None:
    with cur.copy(f"COPY {table_columns} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _floor_batch(cur, ids: list[str], body: str) -> None:
    """The rows one batch of events and their runs leave in the store (see postgres_floor)."""
    runs = ["r" + i for i in ids]
    outs = ["out" + i for i in ids]
    day = "2024-01-01"
    for prefix in ("in", "out"):
        _copy(
            cur,
            "coord_events",
            ((prefix + i, f"{prefix}.{i}", day, "succeeded", 1.0, 1.0, body) for i in ids),
        )
        _copy(
            cur,
            "coord_partitions (dataset, partition_key, event_id, produced_at, updated_at)",
            ((f"{prefix}.{i}", day, prefix + i, 1.0, 1.0) for i in ids),
        )
    _copy(
        cur,
        f"coord_runs ({_RUN_COLUMNS})",
        ((r, r, day, r, 0, "ready", "p", 0, 1, 1, "[]", 0.0, 1.0) for r in runs),
    )
    cur.execute(
        "UPDATE coord_runs SET state = 'starting', attempt = 1, owner = 'b', started_at = 1"
        " WHERE run_id = ANY(%s)",
        (runs,),
    )
    _copy(
        cur, "coord_attempts (run_id, attempt, state, started_at)", ((r, 1, "succeeded", 1.0) for r in runs)
    )
    cur.execute("UPDATE coord_runs SET state = 'succeeded', finished_at = 2 WHERE run_id = ANY(%s)", (runs,))
    _copy(cur, "coord_outbox (event_id, body, created_at)", ((o, body, 1.0) for o in outs))
    cur.execute("UPDATE coord_outbox SET sent_at = 2 WHERE event_id = ANY(%s)", (outs,))


def postgres_floor(backend: Backend, events: int, batch: int = 2000) -> float:
    """Baseline: PostgreSQL alone writing what the store keeps for one event and its run, by COPY.

    Per event, as the engine does it: the input event, its partition version, the run (ready),
    the claim (an UPDATE), the attempt, the run's end (an UPDATE), the output event, its version,
    its outbox entry, the outbox entry marked sent — in transactions of `batch` events, straight
    from Python tuples (no decoding, readiness or bus). Events/s here is a ceiling for any loop
    that keeps those records in this database on this machine.
    """
    import psycopg

    settings = backend.fresh()
    with StateStore(settings.resolved_state_url()) as store:
        store.engine  # noqa: B018 — opening it creates the tables (migrations)
    body = event(0).model_dump_json()
    url = settings.resolved_state_url()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        started = time.perf_counter()
        for first in range(0, events, batch):
            with conn.transaction(), conn.cursor() as cur:
                _floor_batch(cur, [str(n) for n in range(first, min(events, first + batch))], body)
        rate = events / (time.perf_counter() - started)
    print(f"  {backend.name} baseline, PostgreSQL writes alone: {rate:,.0f} events/s", flush=True)
    return round(rate)


def sqlite_floor(backend: Backend, events: int, batch: int = 2000) -> float:
    """Baseline: SQLite alone writing the same records as postgres_floor, with the store's own
    settings (WAL, synchronous=NORMAL), by executemany from Python tuples in transactions of
    `batch` events — a ceiling for any loop that keeps those records in SQLite on this machine."""
    import sqlite3

    settings = backend.fresh()
    url = settings.resolved_state_url()
    with StateStore(url) as store:
        store.engine  # noqa: B018 — opening it creates the tables (migrations)
    body = event(0).model_dump_json()
    conn = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    day = "2024-01-01"
    try:
        started = time.perf_counter()
        for first in range(0, events, batch):
            ids = [str(n) for n in range(first, min(events, first + batch))]
            runs, outs = [("r" + i,) for i in ids], [("out" + i,) for i in ids]
            conn.execute("BEGIN IMMEDIATE")
            for prefix in ("in", "out"):
                conn.executemany(
                    "INSERT INTO coord_events VALUES (?, ?, ?, 'succeeded', 1.0, 1.0, ?)",
                    [(prefix + i, f"{prefix}.{i}", day, body) for i in ids],
                )
                conn.executemany(
                    "INSERT INTO coord_partitions (dataset, partition_key, event_id, produced_at, updated_at)"
                    " VALUES (?, ?, ?, 1.0, 1.0)",
                    [(f"{prefix}.{i}", day, prefix + i) for i in ids],
                )
            conn.executemany(
                f"INSERT INTO coord_runs ({_RUN_COLUMNS})"
                " VALUES (?, ?, ?, ?, 0, 'ready', 'p', 0, 1, 1, '[]', 0.0, 1.0)",
                [(r, r, day, r) for (r,) in runs],
            )
            conn.executemany(
                "UPDATE coord_runs SET state = 'starting', attempt = 1, owner = 'b', started_at = 1"
                " WHERE run_id = ?",
                runs,
            )
            conn.executemany(
                "INSERT INTO coord_attempts (run_id, attempt, state, started_at)"
                " VALUES (?, 1, 'succeeded', 1.0)",
                runs,
            )
            conn.executemany(
                "UPDATE coord_runs SET state = 'succeeded', finished_at = 2 WHERE run_id = ?", runs
            )
            conn.executemany(
                "INSERT INTO coord_outbox (event_id, body, created_at) VALUES (?, ?, 1.0)",
                [(o, body) for (o,) in outs],
            )
            conn.executemany("DELETE FROM coord_outbox WHERE event_id = ?", outs)
            conn.execute("COMMIT")
        rate = events / (time.perf_counter() - started)
    finally:
        conn.close()
    print(f"  {backend.name} baseline, SQLite writes alone: {rate:,.0f} events/s", flush=True)
    return round(rate)
