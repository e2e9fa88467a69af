"""Migration 9 on SQLite and PostgreSQL: a store written by the build before (schema version 8:
whole event bodies, runs' inputs as objects, their input keys, every attempt as a row, the runs'
unique key, the outbox's pending index)
migrates and reads the same events, runs and lineage; and the events' trimmed bodies read back
as the events they were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, inspect

from coordinator import history
from coordinator.events import Column, CompletionEvent, Status
from coordinator.handles import Handle
from coordinator.readiness import evaluate, input_key, step
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.store.migrations import LATEST
from coordinator.store.rows import Finish, event_body, event_of, pkey

SPEC = parse_spec("""
datasets: {raw.a: {partitioning: daily}, raw.b: {partitioning: daily}, mid: {partitioning: daily}}
jobs:
  join: {kind: command, inputs: [raw.a, raw.b], outputs: [mid], settings: {command: x}}
""")
T0 = datetime(2024, 1, 1, 6, 30, 15, 123456, tzinfo=UTC)

ODD_EVENTS = [
    CompletionEvent(dataset="plain", partition=None, producer="p", produced_at=T0),
    CompletionEvent(dataset="empty.key", partition="", produced_at=T0),
    CompletionEvent(
        dataset="zoned", partition="2024-01-01", produced_at=T0.astimezone(timezone(timedelta(hours=2)))
    ),
    CompletionEvent(dataset="naive", partition="2024-01-01", produced_at=datetime(2024, 1, 1, 6, 30)),
    CompletionEvent(
        dataset="failed",
        partition="2024-01-01",
        status=Status.FAILED,
        error="boom",
        row_count=0,
        location="s3://x/y",
        columns=(Column(name="id", type="long"),),
        attributes={"k": "v"},
        producer_run_id="r1",
        produced_at=T0,
    ),
]


def _row(e: CompletionEvent) -> tuple:
    """The events table's columns of `e`, as the store writes them (store/events.py)."""
    return (e.event_id, e.dataset, pkey(e.partition), str(e.status), e.produced_at.timestamp(), event_body(e))


@pytest.mark.parametrize("e", ODD_EVENTS, ids=lambda e: e.dataset)
def test_a_trimmed_body_reads_back_as_the_event(e):
    body = event_body(e)
    assert event_of(_row(e)) == e
    assert '"event_id"' not in body and '"dataset"' not in body
    # an earlier build's whole body reads the same (what it holds wins over the columns)
    assert event_of((*_row(e)[:5], e.model_dump_json(exclude_defaults=True))) == e


def test_the_columns_leave_the_body():
    e = CompletionEvent(dataset="src.1", partition="2024-01-01", producer="bench", produced_at=T0)
    assert orjson.loads(event_body(e)) == {"producer": "bench"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres_url")


def _legacy_inputs(inputs: str) -> str:
    """A run's inputs as the build before stored them: objects keyed by name, Nones left out."""
    names = ("event_id", "dataset", "produced_at", "partition", "row_count", "location", "columns")
    return orjson.dumps([dict(zip(names, d, strict=False)) for d in orjson.loads(inputs)]).decode()


_ATTEMPT = "run_id, attempt, state, started_at, finished_at, error, log_path, details"


def _as_version_8(store: StateStore, events: list[CompletionEvent]) -> None:
    """Rewrite a store of this build as the build before left it (schema version 8)."""
    pg = store.url.startswith("postgresql")
    with store.begin() as tx:
        sql = tx.conn.exec_driver_sql
        p = "%(b)s, %(i)s" if pg else "?, ?"
        for e in events:
            body = e.model_dump_json(exclude_defaults=True)
            sql(f"UPDATE coord_events SET body = {p.split(', ')[0]} WHERE event_id = {p.split(', ')[1]}",
                {"b": body, "i": e.event_id} if pg else (body, e.event_id))  # fmt: skip
        for run_id, inputs in sql("SELECT run_id, inputs FROM coord_runs").all():
            legacy = _legacy_inputs(inputs)
            key = input_key(d[0] for d in orjson.loads(inputs))
            sql(f"UPDATE coord_runs SET input_key = {p.split(', ')[0]} WHERE run_id = {p.split(', ')[1]}",
                {"b": key, "i": run_id} if pg else (key, run_id))  # fmt: skip
            sql(f"UPDATE coord_runs SET inputs = {p.split(', ')[0]} WHERE run_id = {p.split(', ')[1]}",
                {"b": legacy, "i": run_id} if pg else (legacy, run_id))  # fmt: skip
        # every attempt that ran was a row of its own; runs had no log_path or details
        sql(
            f"INSERT INTO coord_attempts ({_ATTEMPT}) SELECT {_ATTEMPT} FROM coord_runs"
            " WHERE attempt >= 1 AND state NOT IN ('ready', 'starting')"
        )
        sql("ALTER TABLE coord_runs DROP COLUMN log_path")
        sql("ALTER TABLE coord_runs DROP COLUMN details")
        sql("DROP INDEX ix_coord_runs_job_partition")
        if pg:
            sql(
                "ALTER TABLE coord_runs ADD CONSTRAINT uq_coord_runs_inputs"
                " UNIQUE (job, partition_key, input_key, generation)"
            )
        else:  # the table as create_all made it then, the key a constraint of the table
            made = sql("SELECT sql FROM sqlite_master WHERE name = 'coord_runs'").scalar()
            key = ", CONSTRAINT uq_coord_runs_inputs UNIQUE (job, partition_key, input_key, generation))"
            sql(made.replace("coord_runs", "coord_runs_v8", 1).rstrip().rstrip(")") + key)
            sql("INSERT INTO coord_runs_v8 SELECT * FROM coord_runs")
            sql("DROP TABLE coord_runs")
            sql("ALTER TABLE coord_runs_v8 RENAME TO coord_runs")
            sql("CREATE INDEX ix_coord_runs_job_created ON coord_runs (job, created_at)")
        sql("CREATE INDEX ix_coord_outbox_pending ON coord_outbox (sent_at, id)")
        sql("DELETE FROM coord_schema_version WHERE version = 9")
    assert LATEST == 9


def _seen(store: StateStore, events: list[CompletionEvent]) -> dict:
    """What the views and lineage read of the store."""
    with store.begin() as tx:
        runs = tx.list_runs()
        outputs = {run.run_id: history.run_outputs(tx, SPEC, run) for run in runs}
        return {
            "events": [tx.get_event(e.event_id) for e in events],
            # a and b were recorded at one time: which comes first is not kept
            "at": sorted(tx.events_at(["raw.a", "raw.b", "mid"], "2024-01-01"), key=lambda e: e.event_id),
            "newest": tx.newest_event("mid", "2024-01-01"),
            "runs": runs,
            "attempts": {run.run_id: tx.attempts(run.run_id) for run in runs},
            "consumed": tx.consumed_inputs(),
            "snapshot": tx.load_snapshot(SPEC, [e for e in events if e.dataset.startswith("raw.")]).consumed,
            "outputs": outputs,
            "upstream": [history.upstream(tx, o) for made in outputs.values() for o in made],
            "consumers": [history.consuming_runs(tx, SPEC, e) for e in events if e.dataset == "raw.a"],
            "reading": tx.runs_reading(["join"], events[0].event_id),
        }


def test_a_version_8_store_migrates_and_reads_the_same(url):
    store = StateStore(url)
    a = CompletionEvent(dataset="raw.a", partition="2024-01-01", produced_at=T0, row_count=3)
    b = CompletionEvent(
        dataset="raw.b", partition="2024-01-01", produced_at=T0, columns=(Column(name="id", type="long"),)
    )
    a2, b2 = (CompletionEvent(dataset=e.dataset, partition="2024-01-02", produced_at=T0) for e in (a, b))
    with store.begin() as tx:
        fresh = tx.insert_events([a, b, *ODD_EVENTS], 1.0)
        snap = tx.load_snapshot(SPEC, fresh)
        before = dict(snap.latest)
        cands = step(SPEC, snap, fresh)
        tx.save_versions([v for k, v in snap.latest.items() if before.get(k) != v], 1.0)
        (run,) = tx.insert_runs(cands, {"join": "default"}, {"join": 1}, 1.0)
        (claimed,) = tx.claim("default", 4, "me#1", 2.0)
        tx.finish_many([Finish(claimed.run_id, claimed.attempt, "succeeded", log_path="l.log")], 3.0)
        out = CompletionEvent(
            dataset="mid",
            partition="2024-01-01",
            producer="coordinator",
            producer_run_id=run.run_id,
            produced_at=T0 + timedelta(hours=1),
            attributes={"job": "join"},
        )
        tx.insert_events([out], 3.0)
        tx.outbox_add([out], 3.0)
        # a run still running when the store is migrated
        fresh = tx.insert_events([a2, b2], 4.0)
        (running,) = tx.insert_runs(
            step(SPEC, tx.load_snapshot(SPEC, fresh), fresh), {"join": "default"}, {"join": 1}, 4.0
        )
        assert [r.run_id for r in tx.claim("default", 4, "me#1", 5.0)] == [running.run_id]
        assert tx.set_running(running.run_id, 1, Handle("command", {"pid": 1}), 5.0)
    events = [a, b, *ODD_EVENTS, out, a2, b2]
    expected = _seen(store, events)
    assert expected["events"] == events and expected["runs"][-1].inputs == run.inputs
    assert expected["outputs"][run.run_id] == [out]
    store.close()

    _as_version_8(store, events)
    engine = create_engine(url)  # not a StateStore: opening one migrates the store
    with engine.begin() as conn:
        bodies = conn.exec_driver_sql("SELECT body FROM coord_events").scalars().all()
        assert len(bodies) == len(events) and all('"event_id"' in body for body in bodies)
        assert max(conn.exec_driver_sql("SELECT version FROM coord_schema_version").scalars()) == 8
    engine.dispose()
    with StateStore(url) as migrated:
        assert _seen(migrated, events) == expected
        with migrated.begin() as tx:
            bodies = tx.conn.exec_driver_sql("SELECT body FROM coord_events").scalars().all()
            inputs = tx.conn.exec_driver_sql("SELECT inputs FROM coord_runs").scalars().all()
            indexes = {i["name"] for i in inspect(tx.conn).get_indexes("coord_runs")}
            outbox_indexes = {i["name"] for i in inspect(tx.conn).get_indexes("coord_outbox")}
            uniques = {u["name"] for u in inspect(tx.conn).get_unique_constraints("coord_runs")}
            pending = tx.outbox_pending()
        assert not any('"event_id"' in body for body in bodies), bodies
        # runs keep the inputs as they were written (both forms read the same)
        assert all(i.startswith('[{"event_id"') for i in inputs)
        assert "ix_coord_runs_job_partition" in indexes and "ix_coord_outbox_pending" not in outbox_indexes
        assert "uq_coord_runs_inputs" not in uniques | indexes
        assert [e for _, e in pending] == [out]
        # a re-run on the same inputs is the next generation; new inputs start at generation 0
        with migrated.begin() as tx:
            snap = tx.load_snapshot(SPEC, [], extra_jobs=[("join", "2024-01-01")])
            cand = evaluate(SPEC, snap, "join", "2024-01-01", force=True)
            (again,) = tx.insert_runs([cand], {"join": "default"}, {"join": 1}, 7.0, rerun=True)
            assert (again.generation, again.input_key) == (1, run.input_key)
            a3 = CompletionEvent(dataset="raw.a", partition="2024-01-01", produced_at=T0 + timedelta(days=1))
            fresh = tx.insert_events([a3], 7.0)
            (newer,) = tx.insert_runs(
                step(SPEC, tx.load_snapshot(SPEC, fresh), fresh), {"join": "default"}, {"join": 1}, 7.0
            )
            assert newer.generation == 0 and newer.input_key != run.input_key
            assert tx.get_run(newer.run_id) == newer
            # and newer inputs again: another run of generation 0 beside it (no key on input_key)
            a4 = CompletionEvent(dataset="raw.a", partition="2024-01-01", produced_at=T0 + timedelta(days=2))
            fresh = tx.insert_events([a4], 7.0)
            (newest,) = tx.insert_runs(
                step(SPEC, tx.load_snapshot(SPEC, fresh), fresh), {"join": "default"}, {"join": 1}, 7.0
            )
            assert newest.generation == 0 and tx.get_run(newest.run_id) == newest
        # the run that was running ends under this build: its one attempt reads as ended
        with migrated.begin() as tx:
            assert tx.finish_many([Finish(running.run_id, 1, "succeeded", log_path="r.log")], 6.0)
            (attempt,) = tx.attempts(running.run_id)
        assert (attempt["state"], attempt["finished_at"], attempt["log_path"]) == ("succeeded", 6.0, "r.log")
        assert attempt["started_at"] == 5.0
