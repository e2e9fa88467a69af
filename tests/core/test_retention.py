"""Retention on SQLite and PostgreSQL: old superseded history goes, the lineage of what is live,
unfinished runs and young rows stay, and slices stay within their budget."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.events import CompletionEvent
from coordinator.outcome import output_event_id
from coordinator.readiness import Version
from coordinator.retention import DAY_S, Pruner
from coordinator.settings import Settings
from coordinator.store import StateStore
from coordinator.store.rows import Finish
from tests.core.test_store import SPEC
from tests.core.test_store import ingest as record

NOW = 100 * DAY_S
TABLES = ("coord_attempts", "coord_runs", "coord_outbox", "coord_partitions", "coord_events")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path: Path):
    url = (
        f"sqlite:///{tmp_path / 'state.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    s = StateStore(url)
    with s.begin() as tx:  # a module's PostgreSQL database is shared: start empty
        for table in TABLES:
            tx.conn.exec_driver_sql(f"DELETE FROM {table}")
    yield s
    s.close()


def settings(**values) -> Settings:
    return Settings(retention_events_days=30, retention_runs_days=30, retention_attempts_days=30, **values)


def ev(dataset: str, partition: str, n: int, day: float) -> CompletionEvent:
    at = datetime.fromtimestamp(day * DAY_S + n, UTC)
    return CompletionEvent(
        event_id=f"{dataset}/{partition}/{n}", dataset=dataset, partition=partition, produced_at=at
    )


def ingest(store: StateStore, events: list[CompletionEvent], day: float) -> list:
    return record(store, events, now=day * DAY_S)


def run_to_end(store: StateStore, run_id: str, day: float, fail: bool = False, publish: bool = True) -> str:
    """Claim the ready run, end its attempt(s) as the engine does; its output event's id."""
    now = day * DAY_S
    with store.begin() as tx:
        [claimed] = [r for r in tx.claim("p", 50, "me", now=now) if r.run_id == run_id]
        if fail:  # attempt 1 fails and is retried, attempt 2 fails for good
            tx.finish_many([Finish(run_id, 1, "failed", error="boom", retry_at=now)], now)
            [claimed] = [r for r in tx.claim("p", 50, "me", now=now + 1) if r.run_id == run_id]
            tx.finish_many([Finish(run_id, 2, "failed", error="boom")], now + 2)
            return ""
        tx.finish_many([Finish(run_id, claimed.attempt, "succeeded")], now)
        out_id = output_event_id(run_id, claimed.attempt, "mid", "succeeded")
        out = CompletionEvent(
            event_id=out_id,
            dataset="mid",
            partition=claimed.partition,
            producer="coordinator",
            producer_run_id=run_id,
            produced_at=datetime.fromtimestamp(now, UTC),
        )
        if publish:
            tx.insert_events([out], now)
            tx.save_versions([Version(out_id, "mid", claimed.partition, now, None, None)], now)
        return out_id


def contents(store: StateStore) -> tuple[set[str], set[str], set[tuple[str, int]]]:
    with store.begin() as tx:
        runs = set(tx.conn.exec_driver_sql("SELECT run_id FROM coord_runs").scalars())
        events = set(tx.conn.exec_driver_sql("SELECT event_id FROM coord_events").scalars())
        # the attempts the store knows (a run's current one is kept on the run's own row)
        attempts = {(run_id, a["attempt"]) for run_id in runs for a in tx.attempts(run_id)}
    return runs, events, attempts


def test_old_superseded_history_goes_and_the_lineage_of_what_is_live_stays(store):
    # d1: built on a0+b0 (day 1), rebuilt on a1+b0 (day 2): the first run and a0, m1 are history
    [r1] = ingest(store, [ev("raw.a", "d1", 0, 1), ev("raw.b", "d1", 0, 1)], 1)
    m1 = run_to_end(store, r1.run_id, 1)
    [r2] = ingest(store, [ev("raw.a", "d1", 1, 2)], 2)
    m2 = run_to_end(store, r2.run_id, 2)
    # d2: failed for good (attempts 1 and 2): the newest run of its partition stays, attempt 1 goes
    [r3] = ingest(store, [ev("raw.a", "d2", 0, 3), ev("raw.b", "d2", 0, 3)], 3)
    run_to_end(store, r3.run_id, 3, fail=True)
    # d3: a run still waiting (unfinished) on a0, which a1 superseded since: both stay
    [r4] = ingest(store, [ev("raw.a", "d3", 0, 4), ev("raw.b", "d3", 0, 4)], 4)
    ingest(store, [ev("raw.a", "d3", 1, 5)], 5)  # a second run of d3 waits too
    # d5: a succeeded run whose rebuild is still running: it produced the current version
    [r5] = ingest(store, [ev("raw.a", "d5", 0, 6), ev("raw.b", "d5", 0, 6)], 6)
    m5 = run_to_end(store, r5.run_id, 6)
    [r6] = ingest(store, [ev("raw.a", "d5", 1, 7)], 7)
    with store.begin() as tx:
        [_] = [r for r in tx.claim("p", 50, "me", now=7 * DAY_S) if r.run_id == r6.run_id]
    # d6: the newer succeeded run published nothing: the older one's output is still current
    [r7] = ingest(store, [ev("raw.a", "d6", 0, 8), ev("raw.b", "d6", 0, 8)], 8)
    m7 = run_to_end(store, r7.run_id, 8)
    [r8] = ingest(store, [ev("raw.a", "d6", 1, 9)], 9)
    run_to_end(store, r8.run_id, 9, publish=False)
    # d9: the same story as d1, but young (day 95): nothing of it goes
    [y1] = ingest(store, [ev("raw.a", "d9", 0, 95), ev("raw.b", "d9", 0, 95)], 95)
    y_m1 = run_to_end(store, y1.run_id, 95)
    [y2] = ingest(store, [ev("raw.a", "d9", 1, 96)], 96)
    run_to_end(store, y2.run_id, 96)

    runs_before, events_before, attempts_before = contents(store)
    pruner = Pruner(store, SPEC, settings())
    pruner.rows = 2  # many small slices: the cursors and the marks must carry across them
    stats = pruner.run_pass(NOW)
    runs, events, attempts = contents(store)

    assert runs_before - runs == {r1.run_id}
    assert events_before - events == {"raw.a/d1/0", m1}
    assert attempts_before - attempts == {(r1.run_id, 1), (r3.run_id, 1)}
    assert (stats.runs, stats.events, stats.attempts) == (1, 2, 2)
    # what is live and what it was built on
    assert {r2.run_id, m2, "raw.a/d1/1", "raw.b/d1/0"} <= runs | events
    assert {r3.run_id, r4.run_id, r5.run_id, r6.run_id, r7.run_id, r8.run_id} <= runs
    assert {"raw.a/d3/0", "raw.a/d5/0", m5, m7, "raw.a/d6/0", y_m1, "raw.a/d9/0"} <= events
    assert (r3.run_id, 2) in attempts
    # a second pass finds nothing more
    again = Pruner(store, SPEC, settings()).run_pass(NOW)
    assert (again.runs, again.events, again.attempts) == (0, 0, 0)
    assert contents(store) == (runs, events, attempts)


def test_a_version_that_moved_during_the_pass_keeps_its_old_event_until_the_next(store):
    [r1] = ingest(store, [ev("raw.a", "d1", 0, 1), ev("raw.b", "d1", 0, 1)], 1)
    run_to_end(store, r1.run_id, 1)
    pruner = Pruner(store, SPEC, settings())
    pruner.run_pass(NOW)  # nothing superseded yet
    ingest(store, [ev("raw.a", "d1", 1, 2)], NOW / DAY_S + 1)  # a0 superseded after the pass began
    assert "raw.a/d1/0" in contents(store)[1]
    assert Pruner(store, SPEC, settings()).run_pass(NOW).events == 0  # moved since NOW: kept
    assert Pruner(store, SPEC, settings()).run_pass(NOW + 2 * DAY_S).events == 0  # r1 (live) read it
    assert "raw.a/d1/0" in contents(store)[1]


def test_the_loop_s_slices_adapt_to_their_budget(store):
    """A slice that took longer than COORD_RETENTION_SLICE_S halves the next one's rows, a quick
    one doubles them; after a slice the pruner rests three times as long as it took."""
    for day in range(1, 5):
        ingest(store, [ev("raw.a", f"d{day}", 0, day), ev("raw.b", f"d{day}", 0, day)], day)
    slow = itertools.count(0.0, 1.0)  # every look at the clock: a second later
    pruner = Pruner(store, SPEC, settings(retention_every_s=10), monotonic=lambda: next(slow))
    pruner.tick(NOW)  # the first pass starts one interval after start-up
    assert pruner.phase == "rest"
    pruner.tick(NOW + 10)
    assert pruner.phase == "events" and pruner.rows == 25  # the runs took over the budget: 50 → 25
    rest_until = pruner._resume_at
    clock = [rest_until - 0.5]
    pruner.monotonic = lambda: clock[0]
    pruner.tick(NOW + 11)  # still resting: nothing is done
    assert pruner.rows == 25 and pruner._stats.slices == 1
    clock[0] = rest_until
    pruner.tick(NOW + 12)  # took no time: rows double (the runs were one slice, the events this one)
    assert pruner.rows == 50 and pruner._stats.slices == 2
    assert pruner.phase == "rest" and pruner.last is not None and pruner.next_pass == NOW + 22


@pytest.mark.postgres
def test_a_slice_over_a_large_store_stays_short(postgres_url):
    """5,000 superseded runs and 10,000 events: the loop's slices each stay near their budget."""
    store = StateStore(postgres_url)
    try:
        with store.begin() as tx:
            for table in TABLES:
                tx.conn.exec_driver_sql(f"DELETE FROM {table}")
        for n in range(50):
            events = [ev("raw.a", f"d{p}", n, 1 + n / 100) for p in range(100)]
            if n == 0:
                events += [ev("raw.b", f"d{p}", 0, 1) for p in range(100)]
            runs = ingest(store, events, 1 + n / 100)
            with store.begin() as tx:
                claimed = tx.claim("p", 5000, "me", now=(1 + n / 100) * DAY_S)
                tx.finish_many(
                    [Finish(r.run_id, r.attempt, "succeeded") for r in claimed], (1 + n / 100) * DAY_S
                )
            assert len(runs) == 100
        budget = 0.02
        pruner = Pruner(store, SPEC, settings(retention_every_s=1, retention_slice_s=budget))
        durations = []
        now = NOW
        pruner.tick(now)
        while pruner.last is None:
            now += 1
            pruner._resume_at = 0.0  # no rest: as many slices as the test can make
            before = pruner._stats.slices
            started = time.monotonic()
            pruner.tick(now)
            if pruner._stats.slices > before or pruner.last is not None:
                durations.append(time.monotonic() - started)
        durations.sort()
        assert pruner.last.runs == 4_900 and pruner.last.events == 4_900
        median = durations[len(durations) // 2]
        assert median < 4 * budget, durations  # a busy machine's spread; the rows adapt to the budget
    finally:
        store.close()


def test_coord_prune_runs_one_pass_and_says_what_it_deleted(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from coordinator.cli import build_app

    spec = tmp_path / "pipeline.yaml"
    spec.write_text(
        "datasets: {raw.a: {partitioning: daily}, raw.b: {partitioning: daily}, mid: {partitioning: daily}}\n"
        "jobs:\n  join: {kind: command, inputs: [raw.a, raw.b], outputs: [mid], pool: p,"
        " settings: {command: x}, retries: {max_attempts: 2}}\npools: {p: 50}\n"
    )
    monkeypatch.setenv("COORD_HOME", str(tmp_path))
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    [r1] = ingest(store, [ev("raw.a", "d1", 0, 1), ev("raw.b", "d1", 0, 1)], 1)  # 1970: decades old
    m1 = run_to_end(store, r1.run_id, 1)
    [r2] = ingest(store, [ev("raw.a", "d1", 1, 2)], 2)
    run_to_end(store, r2.run_id, 2)
    store.close()
    out = CliRunner().invoke(build_app(), ["prune", "--spec", str(spec), "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    counts = json.loads(out.stdout)
    assert (counts["runs"], counts["attempts"], counts["events"]) == (1, 1, 2)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    assert r1.run_id not in contents(store)[0] and m1 not in contents(store)[1]
    store.close()
    again = CliRunner().invoke(build_app(), ["prune", "--spec", str(spec)], catch_exceptions=False)
    assert "pruned 0 runs, 0 attempts and 0 events" in again.stdout


def test_the_service_prunes_from_the_loop_s_periodic_hook(tmp_path: Path):
    from coordinator.service import Service

    with Service(SPEC, Settings(home=tmp_path, bus="local", retention_every_s=60)) as service:
        hooks = [
            task
            for task in service.coordinator.every_turn
            if isinstance(getattr(task, "__self__", None), Pruner)
        ]
        assert len(hooks) == 1
        pruner = hooks[0].__self__
        service.run(until_idle=True, timeout_s=30)
        assert pruner.next_pass is not None  # the loop ticked it: its first pass is one interval away
