"""The loop's watchdog: a run's timeout counts from its first start, across a restart and adoption;
runs of this instance that nobody waits on are found."""

from __future__ import annotations

import time
from pathlib import Path

from coordinator.bus.local import LocalBus
from coordinator.engine import Coordinator
from coordinator.events import CompletionEvent
from coordinator.lease import LeaseKeeper
from coordinator.publish import Publisher
from coordinator.readiness import Candidate
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.watchdog import GRACE_S, Watchdog


def settings_for(tmp_path: Path) -> Settings:
    (tmp_path / "home").mkdir(exist_ok=True)
    return Settings(home=tmp_path / "home", bus="local", lease_ttl_s=4, lease_renew_s=1)


def test_a_timeout_counts_from_the_first_start_across_a_restart(tmp_path: Path):
    settings = settings_for(tmp_path)
    spec = parse_spec("""
datasets: {raw.a: {partitioning: daily}}
jobs:
  slow: {kind: command, inputs: [raw.a], outputs: [o], timeout_s: 3, settings: {command: [sleep, "30"]}}
""")
    with Publisher(LocalBus(settings.home / "bus.db"), settings) as publisher:
        publisher.publish_many([CompletionEvent(dataset="raw.a", partition="2024-01-01", producer="t")])
        publisher.flush()
    first = Coordinator(spec, settings)

    def running() -> bool:
        with first.store.begin() as tx:
            return [r.state for r in tx.list_runs()] == ["running"]

    first.run(stop=running, timeout_s=30)
    first.close()  # left running under a released lease
    time.sleep(2)
    with Coordinator(spec, settings) as coord:  # adopts it at once, re-attaches
        coord.run(until_idle=True, timeout_s=30)
        with coord.store.begin() as tx:
            [run] = tx.list_runs()
    # stopped 3 s after its first start (by the first engine's worker thread, alive in this
    # process, or by the second one's): failed, in attempt 1, not 3 s after the restart
    assert run.state == "failed" and run.error, run
    assert (
        run.attempt == 1 and run.finished_at - run.started_at < 3 + GRACE_S + 1.5
    )  # not 3 s after the restart


def test_the_watchdog_finds_overdue_runs_and_runs_nobody_waits_on(tmp_path: Path):
    settings = settings_for(tmp_path)
    with StateStore(settings.resolved_state_url()) as store:
        keeper = LeaseKeeper(store, settings, name="me")
        keeper.acquire()
        now = time.time()
        with store.begin() as tx:
            cands = [Candidate(job, "2024-01-01", ()) for job in ("late", "lonely", "watched")]
            jobs = ("late", "lonely", "watched")
            pools, budgets = dict.fromkeys(jobs, "p"), dict.fromkeys(jobs, 1)
            runs = tx.insert_runs(cands, pools, budgets, now - 100, room={"p": 3}, owner=keeper.id)
        ids = {r.job: r.run_id for r in runs}
        dog = Watchdog({"late": 10.0, "lonely": None, "watched": 1000.0}, time.time)
        with store.begin() as tx:
            seen = dog.look(tx, keeper.id, {ids["late"], ids["watched"]}, now)
        assert [(r.job, t) for r, t in seen.overdue] == [("late", 10.0)]
        assert [r.job for r in seen.orphans] == ["lonely"]
        with store.begin() as tx:  # an attempt being stopped is reported once
            assert dog.look(tx, keeper.id, {ids["late"], ids["watched"], ids["lonely"]}, now).overdue == []
