"""The state store's PostgreSQL path: its compiled statements, pooled connections the server
ended, the pools' lock tried by the readiness snapshot, and the launch transaction's round trips."""

from __future__ import annotations

import time

import pytest

from coordinator.errors import StoreError
from coordinator.readiness import step
from coordinator.store import StateStore
from tests.core.test_store import BUDGETS, POOLS, SPEC, ev, ingest

pytestmark = pytest.mark.postgres


@pytest.mark.postgres
def test_a_failing_statement_of_the_compiled_path_rolls_the_transaction_back(postgres_url):
    """On PostgreSQL a turn's statements run compiled once on the driver's connection: a driver
    error there is a StoreError like any other, and what the transaction wrote before is undone."""
    store = StateStore(postgres_url)
    try:
        with pytest.raises(StoreError, match="too long"), store.begin() as tx:
            tx.insert_events([ev("raw.a", "2024-01-01", 7)], 1.0)
            # wider than the dataset column (the model refuses it; the database must too)
            tx.insert_events([ev("raw.b", "2024-01-01").model_copy(update={"dataset": "x" * 600})], 1.0)
        with store.begin() as tx:
            assert tx.count_events() == 0
            # the same compiled statements serve the next transaction, whatever its row count
            assert [e.event_id for e in tx.insert_events([ev("raw.a", "2024-01-01", 7)], 1.0)] == [
                "raw.a/2024-01-01/7"
            ]
            assert tx.insert_events([ev("raw.a", "2024-01-01", 7), ev("raw.b", "2024-01-01", 8)], 1.0) == [
                ev("raw.b", "2024-01-01", 8)
            ]
            tx.conn.exec_driver_sql("DELETE FROM coord_events")
    finally:
        store.close()


@pytest.mark.postgres
def test_pooled_connections_the_server_ended_are_replaced_at_checkout(postgres_url):
    """No ping before each transaction: a pooled connection the server ended (a restart, an
    administrator's pg_terminate_backend) is replaced as it is checked out, and the transaction
    runs on a new one."""
    import psycopg

    store = StateStore(postgres_url)
    try:
        with store.begin() as tx:
            (before,) = tx.conn.exec_driver_sql("SELECT pg_backend_pid()").one()
        with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
            (ended,) = admin.execute("SELECT pg_terminate_backend(%s)", (before,)).fetchone()
            assert ended
            for _ in range(100):  # the backend is gone once it no longer shows
                if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (before,)).fetchone():
                    break
                time.sleep(0.01)
        with store.begin() as tx:
            assert [e.event_id for e in tx.insert_events([ev("raw.a", "2024-01-01", 3)], 1.0)] == [
                "raw.a/2024-01-01/3"
            ]
            (after,) = tx.conn.exec_driver_sql("SELECT pg_backend_pid()").one()
            assert after != before
            tx.conn.exec_driver_sql("DELETE FROM coord_events")
    finally:
        store.close()


@pytest.mark.postgres
def test_the_snapshot_tries_the_pools_lock_and_pool_room_keeps_its_answer(postgres_url):
    """On PostgreSQL the readiness snapshot's statement tries the lock of each pool its jobs
    are in (`load_snapshot(lock_pools=True)`), and `pool_room` goes by that answer: held, the
    room is counted with no lock statement of its own; held by another transaction, there is
    no room (a try in this transaction is not made again: the run is created ready, claimed
    at a later turn)."""
    import psycopg

    store = StateStore(postgres_url)
    other = psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    holds = "SELECT pg_try_advisory_xact_lock(hashtext('coord-pool:p'))"
    try:
        with store.begin() as tx:
            fresh = tx.insert_events([ev("raw.a", "2024-02-01"), ev("raw.b", "2024-02-01")], 1.0)
            tx.load_snapshot(SPEC, fresh, lock_pools=True)
            assert other.execute(holds).fetchone() == (False,)  # this transaction has it already
            other.rollback()
            assert tx.pool_room("p", 2, 1.0) == 2
        assert other.execute(holds).fetchone() == (True,)  # the other transaction has it now
        with store.begin() as tx:
            fresh = tx.insert_events([ev("raw.a", "2024-02-02"), ev("raw.b", "2024-02-02")], 1.0)
            snap = tx.load_snapshot(SPEC, fresh, lock_pools=True)
            other.rollback()  # let go: the answer kept is still "held by another"
            assert tx.pool_room("p", 2, 1.0) == 0
            runs = tx.insert_runs(step(SPEC, snap, fresh), POOLS, BUDGETS, 1.0, room={"p": 0}, owner="me")
            assert [r.state for r in runs] == ["ready"]
            assert tx.claim("p", 2, "me", now=1.0, wait=True) is not None  # a waiting lock is taken
    finally:
        other.close()
        with store.begin() as tx:
            for table in ("coord_attempts", "coord_runs", "coord_outbox", "coord_partitions", "coord_events"):
                tx.conn.exec_driver_sql(f"DELETE FROM {table}")
        store.close()


@pytest.mark.postgres
def test_an_event_that_starts_a_run_is_recorded_in_four_statements(postgres_url, monkeypatch):
    """The launch path's transaction on PostgreSQL (steps.record, as for an event POST /events
    handed over): the events' insert with the audit row; the outbox row with the snapshot and the
    pool's lock; the versions with the pool's room; the runs, created claimed. A statement more
    is a round trip more for every launch (bench/txn.py, bench/launch.py)."""
    from coordinator.hooks import Hooks
    from coordinator.steps import TurnSteps
    from coordinator.store import audit
    from coordinator.store.deferred import Deferred
    from coordinator.turn import ClaimSchedule

    sent: list[str] = []
    cursor = Deferred._cursor

    def counted(self, sql, params):
        sent.append(sql)
        return cursor(self, sql, params)

    monkeypatch.setattr(Deferred, "_cursor", counted)
    store = StateStore(postgres_url)
    steps = TurnSteps(SPEC, Hooks(), ClaimSchedule())
    try:
        ingest(store, [ev("raw.a", "2024-03-01")])  # the other input is there already
        sent.clear()
        with store.begin() as tx:
            audit.add_many(tx, [audit.row("api", "publish", job="raw.b", partition="2024-03-01", at=2.0)])
            step_ = steps.record(tx, [ev("raw.b", "2024-03-01")], 2.0, "me", publish_new=True)
        assert [r.partition for r in step_.start] == ["2024-03-01"]
        assert len(sent) == 4, sent
        assert "coord_audit" in sent[0] and "coord_events" in sent[0]
        assert "coord_outbox" in sent[1] and "pg_try_advisory_xact_lock" in sent[1]
        assert "coord_partitions" in sent[2] and "count" in sent[2]
        assert sent[3].startswith("INSERT INTO coord_runs")
        with store.begin() as tx:
            assert [r.detail for r in audit.recent(tx, limit=1)] == [None]
            assert tx.outbox_count() == 1 and tx.count_runs(("starting",), "p") == 1
    finally:
        with store.begin() as tx:
            for table in ("coord_attempts", "coord_runs", "coord_outbox", "coord_partitions", "coord_events"):
                tx.conn.exec_driver_sql(f"DELETE FROM {table}")
        store.close()


def test_nul_characters_outside_the_key_fields_are_stored_and_read_back(postgres_url):
    """Only the fields with columns of their own refuse a NUL (events.KEY_FIELDS); the rest travel
    in the event's JSON body, which PostgreSQL stores as text with the NUL escaped."""
    from coordinator.events import CompletionEvent, Status

    event = CompletionEvent(
        dataset="raw.a",
        partition="2024-04-01",
        status=Status.FAILED,
        error="boom\x00",
        location="x\x00y",
        attributes={"k\x00": "v\x00", "é": "😀"},
    )
    store = StateStore(postgres_url)
    try:
        with store.begin() as tx:
            assert tx.insert_events([event], 1.0) == [event]
        with store.begin() as tx:
            assert tx.get_event(event.event_id) == event
            tx.conn.exec_driver_sql("DELETE FROM coord_events")
    finally:
        store.close()
