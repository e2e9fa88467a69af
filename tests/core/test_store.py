"""The state store on SQLite and PostgreSQL: migrations, dedupe, unique runs, exactly-once claims."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coordinator.errors import StoreError
from coordinator.events import Column, CompletionEvent, Status
from coordinator.launchers.base import Handle
from coordinator.readiness import step
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.store.migrations import LATEST
from coordinator.store.rows import Finish

SPEC = parse_spec("""
datasets: {raw.a: {partitioning: daily}, raw.b: {partitioning: daily}}
jobs:
  join: {kind: command, inputs: [raw.a, raw.b], outputs: [mid], pool: p, settings: {command: x},
         retries: {max_attempts: 2}}
pools: {p: 2}
""")
POOLS, BUDGETS = {"join": "p"}, {"join": 2}
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ev(dataset, partition, n=0):
    return CompletionEvent(
        event_id=f"{dataset}/{partition}/{n}",
        dataset=dataset,
        partition=partition,
        produced_at=T0 + timedelta(seconds=n),
        row_count=n,
        columns=(Column(name="id", type="long"),),
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = StateStore(url)
    yield s
    if request.param == "postgres":  # one database per module: leave it empty for the next test
        with s.begin() as tx:
            for table in ("coord_attempts", "coord_runs", "coord_outbox", "coord_partitions", "coord_events"):
                tx.conn.exec_driver_sql(f"DELETE FROM {table}")
    s.close()


def ingest(store, events, now=1.0):
    with store.begin() as tx:
        fresh = tx.insert_events(events, now)
        snap = tx.load_snapshot(SPEC, fresh)
        before = dict(snap.latest)
        cands = step(SPEC, snap, fresh)
        tx.save_versions([v for k, v in snap.latest.items() if before.get(k) != v], now)
        return tx.insert_runs(cands, POOLS, BUDGETS, now)


def test_migrations_are_versioned_and_idempotent(store):
    with store.begin() as tx:
        versions = tx.conn.exec_driver_sql(
            "SELECT version FROM coord_schema_version ORDER BY version"
        ).scalars()
        assert list(versions) == list(range(1, LATEST + 1))
    again = StateStore(store.url)
    with again.begin() as tx:
        assert tx.count_events() == 0
    again.close()


def test_replays_record_nothing_and_create_no_runs(store):
    created = ingest(store, [ev("raw.a", "d"), ev("raw.b", "d"), ev("raw.a", "d")])
    assert [(r.job, r.partition, r.state) for r in created] == [("join", "d", "ready")]
    assert [v.event_id for v in created[0].inputs] == ["raw.a/d/0", "raw.b/d/0"]
    assert ingest(store, [ev("raw.a", "d"), ev("raw.b", "d")]) == []
    # an older version arriving late does not replace the newer one
    ingest(store, [ev("raw.a", "e", 5)])
    ingest(store, [ev("raw.a", "e", 1)])
    with store.begin() as tx:
        latest = {(v.dataset, v.partition): v.event_id for v in tx.latest_versions()}
        assert latest[("raw.a", "e")] == "raw.a/e/5"
        assert tx.count_events() == 4


def test_rerun_makes_a_new_generation(store):
    [run] = ingest(store, [ev("raw.a", "d"), ev("raw.b", "d")])
    with store.begin() as tx:
        snap = tx.load_snapshot(SPEC, [], extra_jobs=[("join", "d")])
        from coordinator.readiness import evaluate

        cand = evaluate(SPEC, snap, "join", "d", force=True)
        [again] = tx.insert_runs([cand], POOLS, BUDGETS, 2.0, rerun=True)
        assert again.generation == 1 and again.run_id != run.run_id and again.input_key == run.input_key


def test_claims_respect_the_pool_and_happen_once(store):
    for day in range(1, 6):
        ingest(store, [ev("raw.a", f"2024-01-0{day}"), ev("raw.b", f"2024-01-0{day}")])
    won: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        for _ in range(5):
            with store.begin() as tx:
                got = tx.claim("p", 2, name, now=10.0)
            with lock:
                won.extend(r.run_id for r in got)

    threads = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 2 and len(set(won)) == 2  # pool p holds 2, and nothing is claimed twice
    with store.begin() as tx:
        assert tx.count_runs(("starting",), "p") == 2
        run = tx.get_run(won[0])
        assert run.attempt == 1
        assert tx.set_running(run.run_id, 1, Handle("command", {"pid": 1}), 11.0)
        assert tx.finish(run.run_id, 1, "failed", 12.0, error="boom", retry_at=20.0)
        assert tx.get_run(run.run_id).state == "ready"
        assert run.run_id not in [r.run_id for r in tx.claim("p", 2, "x", now=15.0)]  # backoff not over
        assert not tx.finish(run.run_id, 1, "succeeded", 13.0)  # a stale attempt changes nothing
        assert tx.attempts(run.run_id)[0]["error"] == "boom"


def test_retry_gives_a_failed_run_a_fresh_budget(store):
    [run] = ingest(store, [ev("raw.a", "d"), ev("raw.b", "d")])
    with store.begin() as tx:
        for attempt in (1, 2):
            [claimed] = tx.claim("p", 2, "me", now=float(attempt))
            assert claimed.attempt == attempt
            with pytest.raises(StoreError, match="only failed or blocked"):
                tx.retry(run.run_id, 3.0)
            tx.finish(
                run.run_id,
                attempt,
                "failed",
                float(attempt),
                error="boom",
                retry_at=1.5 if attempt == 1 else None,
            )
        again = tx.retry(run.run_id, 3.0)
        assert (again.state, again.max_attempts) == ("ready", 4)
        # every attempt stays known: the retried one, and the one that ended the run, which was
        # on the run's row until the retry (store/runs.py), then the third while it runs and ends
        [third] = tx.claim("p", 2, "me", now=4.0)
        assert [(a["attempt"], a["state"], a["error"]) for a in tx.attempts(run.run_id)] == [
            (1, "failed", "boom"),
            (2, "failed", "boom"),
        ]
        assert tx.set_running(run.run_id, 3, Handle("command", {"pid": 1}), 4.0)
        assert tx.finish(run.run_id, 3, "succeeded", 5.0, log_path="3.log")
        assert [(a["attempt"], a["state"], a["log_path"]) for a in tx.attempts(run.run_id)] == [
            (1, "failed", None),
            (2, "failed", None),
            (3, "succeeded", "3.log"),
        ]


def test_outbox(store):
    with store.begin() as tx:
        tx.outbox_add([ev("mid", "d"), ev("mid", "e")], 1.0)
        tx.outbox_add([ev("mid", "d")], 1.0)  # the same event is queued once
    with store.begin() as tx:
        pending = tx.outbox_pending()
        assert [e.event_id for _, e in pending] == ["mid/d/0", "mid/e/0"]
        tx.outbox_mark_sent([i for i, _ in pending])
    with store.begin() as tx:
        assert tx.outbox_count() == 0


def test_driver_errors_become_store_errors(tmp_path: Path):
    with pytest.raises(StoreError, match="cannot open"):
        _ = StateStore("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2").engine
    with pytest.raises(StoreError):
        _ = StateStore(f"sqlite:///{tmp_path}/missing-dir/state.db").engine


@pytest.mark.parametrize("first", ["insert_events", "claim", "outbox_add", "finish_many"])
def test_a_fenced_transaction_writes_nothing_whatever_its_first_statement(store, tmp_path: Path, first):
    """The lease's fence travels with the transaction's next statement on PostgreSQL (inside an
    insert of events or an update of runs, before a claim, before the commit): once the lease
    was adopted, the transaction raises LeaseLost and leaves nothing; while it is live, it
    writes as ever."""
    from coordinator.lease import LeaseKeeper, LeaseLost
    from coordinator.settings import Settings
    from coordinator.store import leases as L

    keeper = LeaseKeeper(store, Settings(home=tmp_path), name=f"fence-{first}-{tmp_path.name}")
    keeper.acquire()
    ingest(store, [ev("raw.a", "2024-01-01"), ev("raw.b", "2024-01-01")])  # a ready run
    started: list = []
    if first == "finish_many":  # two runs started: one to end live, one fenced
        ingest(store, [ev("raw.a", "2024-01-03"), ev("raw.b", "2024-01-03")])
        with store.begin() as tx:
            started = sorted(tx.claim("p", 2, keeper.id, now=1.5), key=lambda r: r.partition)

    def work(tx, n: int):
        if first == "insert_events":
            return [e.event_id for e in tx.insert_events([ev("raw.a", "2024-01-02", n)], 2.0)]
        if first == "claim":
            return [r.partition for r in tx.claim("p", 2, keeper.id, now=2.0)]
        if first == "finish_many":  # an UPDATE of runs, its first statement
            run = started[n - 1]
            return sorted(tx.finish_many([Finish(run.run_id, run.attempt, "succeeded")], 2.0))
        tx.outbox_add([ev("mid", "2024-01-01", n)], 2.0)
        return None

    with store.begin() as tx:
        keeper.hold(tx)
        expected = {"insert_events": ["raw.a/2024-01-02/1"], "claim": ["2024-01-01"]}
        expected["finish_many"] = [started[0].run_id] if started else []
        assert work(tx, 1) == expected.get(first)
    with store.begin() as tx:
        L.expire(tx, keeper.id, time.time(), "paused past its TTL")
        assert keeper.id in [a.lease.lease_id for a in L.adopt(tx, "adopter#1", time.time())]
        before = (tx.count_events(), tx.outbox_count(), len(tx.list_runs(states=["starting"])))
    if first == "claim":
        with store.begin() as tx:  # the adopter's: back to ready, for the fenced claim to find
            tx.finish_many(
                [Finish(r.run_id, r.attempt, "failed", retry_at=0.0) for r in tx.active_runs("adopter#1")],
                2.0,
            )
            before = (before[0], before[1], 0)
    with pytest.raises(LeaseLost, match="lost"), store.begin() as tx:
        keeper.hold(tx)
        work(tx, 2)
        tx.outbox_add([ev("mid", "2024-01-02", 2)], 2.0)
    assert keeper.lost is not None
    with store.begin() as tx:
        assert (tx.count_events(), tx.outbox_count(), len(tx.list_runs(states=["starting"]))) == before


def test_writes_that_travel_with_a_later_statement_are_seen_by_every_read_after_them(store):
    """On PostgreSQL an outbox or audit row, or a version, is written with the transaction's
    next statement (or before its commit): every later read sees it, a second write of the same
    table is deduplicated as before, and a transaction that fails leaves none of them."""
    from coordinator.store import audit

    d, e, f = ev("mid", "2024-01-01"), ev("mid", "2024-01-02"), ev("mid", "2024-01-03")
    with store.begin() as tx:
        tx.outbox_add([d], 1.0)
        tx.outbox_add([d, e], 1.0)  # the same table again: one row of d all the same
        audit.add(tx, "tester", "publish", job="mid", partition="2024-01-01", detail="traveling", at=1.0)
        assert tx.outbox_count() == 2  # a statement SQLAlchemy runs itself
        tx.outbox_mark_sent_events([d.event_id])  # one of the store's own, of that table
        tx.outbox_add([f], 1.0)
        assert tx.insert_events([ev("raw.a", "2024-01-01", 4)], 1.0)  # reads no outbox: f goes with it
        assert [r.detail for r in audit.recent(tx, limit=1)] == ["traveling"]
    with store.begin() as tx:
        assert [x.event_id for _, x in tx.outbox_pending()] == [e.event_id, f.event_id]
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.outbox_add([ev("mid", "2024-01-04")], 1.0)
        tx.insert_events([ev("raw.b", "2024-01-01", 5)], 1.0)
        raise RuntimeError("the caller fails: its transaction is rolled back")
    with store.begin() as tx:
        assert [x.event_id for _, x in tx.outbox_pending()] == [e.event_id, f.event_id]
        assert tx.count_events() == 1


def test_claims_take_at_most_the_limit_and_the_free_slots(store):
    for day in range(1, 5):
        ingest(store, [ev("raw.a", f"2024-01-0{day}"), ev("raw.b", f"2024-01-0{day}")])
    with store.begin() as tx:
        first = tx.claim("p", 3, "me", now=10.0, limit=1)
        assert [r.partition for r in first] == ["2024-01-01"]  # oldest due first
        more = tx.claim("p", 3, "me", now=10.0)
        assert [r.partition for r in more] == ["2024-01-02", "2024-01-03"]  # the pool holds 3
        assert tx.claim("p", 3, "me", now=10.0) == []
        assert tx.pool_room("p", 3, 10.0) == 0
        assert {r.run_id for r in tx.active_runs("me")} == {r.run_id for r in first + more}


def test_only_current_attempts_start_and_finish(store):
    for day in (1, 2):
        ingest(store, [ev("raw.a", f"2024-01-0{day}"), ev("raw.b", f"2024-01-0{day}")])
    with store.begin() as tx:
        a, b = tx.claim("p", 2, "me", now=10.0)
        h = Handle("command", {"pid": 7})
        assert tx.set_running_many([(a.run_id, 1, h), (b.run_id, 2, h)], 11.0) == {a.run_id}
        assert tx.get_run(a.run_id).handle == h and tx.get_run(b.run_id).state == "starting"
        done = tx.finish_many(
            [Finish(a.run_id, 1, "succeeded", details={"rows": 3}), Finish(b.run_id, 9, "failed")], 12.0
        )
        assert done == {a.run_id}
        assert (tx.get_run(a.run_id).state, tx.get_run(a.run_id).finished_at) == ("succeeded", 12.0)
        assert tx.attempts(a.run_id)[0]["details"] == '{"rows": 3}'
        assert tx.finish_many([Finish(b.run_id, 1, "failed", handle=h)], 13.0) == {b.run_id}
        assert tx.get_run(b.run_id).handle == h  # an attempt that started and ended between writes


def test_outbox_by_event_id(store):
    with store.begin() as tx:
        tx.outbox_add([ev("mid", "d"), ev("mid", "e")], 1.0)
        tx.outbox_mark_sent_events(["mid/d/0"])
        tx.outbox_mark_sent_events([])
        tx.outbox_mark_sent([])
        assert [e.event_id for _, e in tx.outbox_pending()] == ["mid/e/0"]


def test_the_views_read_what_the_loop_wrote(store):
    [run] = ingest(store, [ev("raw.a", "2024-01-01"), ev("raw.b", "2024-01-01")])
    failed = ev("raw.a", "2024-01-02", 5).model_copy(update={"status": Status.FAILED, "producer": "el"})
    ingest(store, [failed], now=2.0)
    with store.begin() as tx:
        assert tx.get_event("raw.a/2024-01-01/0") == ev("raw.a", "2024-01-01")
        assert tx.get_event("nope") is None
        assert [e.dataset for e in tx.events_at(["raw.a", "raw.b"], "2024-01-01")] == ["raw.a", "raw.b"]
        assert tx.newest_event("raw.a", "2024-01-02", status="failed").producer == "el"
        assert tx.newest_event("raw.b", "2024-01-02") is None
        assert tx.version_event_id("raw.a", "2024-01-01") == "raw.a/2024-01-01/0"
        assert tx.version_event_id("raw.a", "2024-01-02") is None  # a failure is no version
        assert {v.dataset for v in tx.versions_at(["2024-01-01", None])} == {"raw.a", "raw.b"}
        assert tx.partition_keys() == {"2024-01-01"}
        assert tx.produced_times("raw.") == {
            "raw.a/2024-01-01/0": T0.timestamp(),
            "raw.b/2024-01-01/0": T0.timestamp(),
            "raw.a/2024-01-02/5": T0.timestamp() + 5,
        }
        assert tx.produced_times("raw_") == {}  # a prefix, not a LIKE pattern
        assert [r.run_id for r in tx.runs_reading(["join"], "raw.b/2024-01-01/0")] == [run.run_id]
        assert [r.run_id for r in tx.runs_at(["2024-01-01"])] == [run.run_id]
        assert tx.run_counts() == [("join", "ready", 1)]
        [claimed] = tx.claim("p", 2, "me", now=3.0)
        tx.finish(claimed.run_id, claimed.attempt, "failed", 4.0, error="boom")
        assert [r.run_id for r in tx.runs_ended(("failed",), since=4.0)] == [run.run_id]
        assert tx.runs_ended(("failed",), since=5.0) == []


def test_alert_records_are_kept_once(store):
    row = {
        "incident": "run-failed:x",
        "url": "http://127.0.0.1/h",
        "kind": "run-failed",
        "body": "{}",
        "created_at": 1.0,
        "sent_at": None,
        "attempts": 0,
        "next_at": 1.0,
        "last_error": None,
    }
    with store.begin() as tx:
        tx.alerts_setup()
        assert tx.alerts_add([row, {**row, "url": "http://127.0.0.1/other"}]) == 2
        assert tx.alerts_add([row]) == 0
        assert tx.alert_incidents(["run-failed"]) == {"run-failed:x"}
        assert len(tx.alerts_due(1.0, "run-failed:x")) == 2 and tx.alerts_due(0.5) == []
        tx.alert_tried("run-failed:x", row["url"], attempts=1, sent_at=2.0)
        assert [a["url"] for a in tx.alerts_due(3.0)] == ["http://127.0.0.1/other"]
        if tx.pg:  # one database per module: leave it empty for the next test
            tx.conn.exec_driver_sql("DROP TABLE coord_alerts")


def test_a_fresh_sqlite_store_opened_by_several_at_once_opens_for_all(tmp_path: Path):
    """A new file's switch to WAL: of connections switching it at the same moment, SQLite answers
    some with "database is locked" at once, without waiting (its deadlock rule: they hold the file
    shared and want it to themselves) — seen as a service and its UI opening one store together.
    Each store waits its turn instead; 30 fresh files, three stores opening each at once."""
    for n in range(30):
        path = tmp_path / f"state{n}.db"
        stores = [StateStore(f"sqlite:///{path}") for _ in range(3)]
        barrier, errors = threading.Barrier(3), []

        def open_it(store: StateStore, barrier: threading.Barrier, errors: list) -> None:
            barrier.wait()
            try:
                assert store.engine is not None
            except StoreError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_it, args=(s, barrier, errors)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for store in stores:
            store.close()
        assert errors == [], errors
