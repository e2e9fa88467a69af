"""Schedules through the engine, on an injected clock: a tick is recorded once per scheduled time
across two coordinator instances and restarts, on SQLite and on PostgreSQL; a job takes the
tick and another dataset as the AND of its inputs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.bus.local import LocalBus
from coordinator.engine import Coordinator
from coordinator.events import CompletionEvent
from coordinator.launchers.stub import StubLauncher
from coordinator.publish import Publisher
from coordinator.schedules import Tick
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.ticker import Ticker, attach

SPEC_TEXT = """
schedules:
  NAME: {cron: "0 6 * * *", timezone: Europe/Berlin, catch_up: all, start: 2024-03-29}
datasets:
  scores: {partitioning: daily}
jobs:
  push_NAME: {kind: command, inputs: [schedule.NAME, scores], outputs: [pushed_NAME], settings: {command: x}}
"""


def spec_for(name: str):
    """The spec with a schedule of its own per test (PostgreSQL's database is the module's)."""
    return parse_spec(SPEC_TEXT.replace("NAME", name))


DAYS = ["2024-03-28", "2024-03-29", "2024-03-30", "2024-03-31", "2024-04-01"]  # what the ticks stand for


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, at: datetime) -> None:
        self.now = at.timestamp()


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(state_url: str):
    with StateStore(state_url) as s:
        yield s


def instance(name: str, tmp_path: Path, store: StateStore, clock: Clock, stub: StubLauncher, spec):
    settings = Settings(home=tmp_path / "home", bus="local", instance_name=name, state_url=store.url)
    coord = Coordinator(spec, settings, store=store, launchers={"command": stub}, clock=clock)
    ticker = attach(coord)
    assert ticker is not None
    return coord, ticker


def publish_scores(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", bus="local")
    settings.home.mkdir(parents=True, exist_ok=True)
    with Publisher(LocalBus(settings.home / "bus.db"), settings) as p:
        p.publish_many(
            [
                CompletionEvent(event_id=f"scores-{d}", dataset="scores", partition=d, producer="t")
                for d in DAYS
            ]
        )
        p.flush()


def ticks_recorded(store: StateStore, name: str) -> dict[str, int]:
    with store.begin() as tx:
        return {d: len(tx.version_history(f"schedule.{name}", d)) for d in DAYS}


def push_runs(store: StateStore, name: str) -> list[str | None]:
    with store.begin() as tx:
        return sorted(r.partition for r in tx.list_runs(f"push_{name}", limit=None))


def test_two_instances_and_a_restart_record_each_tick_once(tmp_path: Path, store: StateStore):
    publish_scores(tmp_path)
    stub, spec = StubLauncher(kind="command"), spec_for("two_instances")
    clock = Clock(datetime(2024, 3, 29, 12, tzinfo=UTC))
    a, ticker_a = instance("a", tmp_path, store, clock, stub, spec)
    b, ticker_b = instance("b", tmp_path, store, clock, stub, spec)
    try:
        a.run(until_idle=True, timeout_s=60)  # the scores, and the tick of 03-29 06:00 (start)
        b.run(until_idle=True, timeout_s=60, consume=False)  # the same look: nothing new
        assert (ticker_a.fired, ticker_b.fired) == (1, 0)
        assert push_runs(store, "two_instances") == ["2024-03-28"]
        clock.set(datetime(2024, 3, 31, 12, tzinfo=UTC))  # two days on, B looks first
        b.run(until_idle=True, timeout_s=60, consume=False)
        a.run(until_idle=True, timeout_s=60, consume=False)  # computes the same two ticks
        assert (ticker_a.fired, ticker_b.fired) == (1, 2)
    finally:
        a.close()
    # A restarts after an outage: it catches up from the newest tick recorded, B looks again
    clock.set(datetime(2024, 4, 2, 12, tzinfo=UTC))
    a2, ticker_a2 = instance("a", tmp_path, store, clock, stub, spec)
    try:
        a2.run(until_idle=True, timeout_s=60, consume=False)
        b.run(until_idle=True, timeout_s=60, consume=False)
        assert (ticker_a2.fired, ticker_b.fired) == (2, 2)
    finally:
        a2.close()
        b.close()
    assert ticks_recorded(store, "two_instances") == dict.fromkeys(DAYS, 1)
    assert push_runs(store, "two_instances") == DAYS  # one push per day: the tick AND the scores
    assert sorted(p for j, p in stub.ran("push_two_instances")) == DAYS


def test_instances_firing_the_same_ticks_at_once_record_each_once(tmp_path: Path, store: StateStore):
    """Ten rounds of two instances recording the same tick in the same instant (threads released
    together): the store's unique event id lets exactly one record it."""
    stub, spec = StubLauncher(kind="command"), spec_for("at_once")
    clock = Clock(datetime(2024, 3, 29, 12, tzinfo=UTC))
    a, _ = instance("a", tmp_path, store, clock, stub, spec)
    b, _ = instance("b", tmp_path, store, clock, stub, spec)
    try:
        for coord in (a, b):
            coord.run(until_idle=True, timeout_s=30, consume=False)  # leases, recovery
        for day in range(10):
            at = datetime(2024, 5, 1 + day, 4, tzinfo=UTC)
            tick = Tick("at_once", at, at.date().isoformat())
            barrier, got = threading.Barrier(2), []
            threads = [threading.Thread(target=fire, args=(c, tick, barrier, got)) for c in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(got) == [0, 1], f"{at}: recorded {got}"
    finally:
        a.close()
        b.close()


def fire(coord: Coordinator, tick: Tick, barrier: threading.Barrier, got: list[int]) -> None:
    barrier.wait()
    got.append(coord.record_own([tick.event()]))


def test_no_schedules_no_ticker(tmp_path: Path, store: StateStore):
    plain = parse_spec(
        "datasets: {a: {}}\njobs: {j: {kind: command, inputs: [a], outputs: [o], settings: {command: x}}}"
    )
    settings = Settings(home=tmp_path / "home", bus="local", state_url=store.url)
    with Coordinator(plain, settings, store=store) as coord:
        assert attach(coord) is None and len(coord.every_turn) == 1  # the lease's only
    assert Ticker({}, store, lambda events: 0).tick(0.0) is None


def test_a_tick_published_by_hand_does_not_move_where_the_schedule_stands(tmp_path: Path, store: StateStore):
    stub, spec = StubLauncher(kind="command"), spec_for("by_hand")
    clock = Clock(datetime(2024, 3, 29, 12, tzinfo=UTC))
    a, ticker = instance("a", tmp_path, store, clock, stub, spec)
    try:
        a.run(until_idle=True, timeout_s=30, consume=False)  # 03-29 06:00 (start)
        manual = CompletionEvent(
            dataset="schedule.by_hand", partition="2024-03-30", producer="cli",
            produced_at=datetime(2024, 3, 31, 10, tzinfo=UTC),
        )  # fmt: skip
        assert a.record_own([manual]) == 1
    finally:
        a.close()
    clock.set(datetime(2024, 3, 31, 12, tzinfo=UTC))
    again, ticker = instance("a", tmp_path, store, clock, stub, spec)
    try:
        again.run(until_idle=True, timeout_s=30, consume=False)
    finally:
        again.close()
    assert ticker.fired == 2  # 03-30 and 03-31 06:00, though the hand-made one is newer
    with store.begin() as tx:
        assert len(tx.version_history("schedule.by_hand", "2024-03-30")) == 2  # its tick and the manual


def test_a_stopping_instance_leaves_a_due_tick_to_the_next(tmp_path: Path, store: StateStore):
    stub, spec = StubLauncher(kind="command"), spec_for("draining")
    clock = Clock(datetime(2024, 3, 29, 12, tzinfo=UTC))
    a, ticker = instance("a", tmp_path, store, clock, stub, spec)
    try:
        a.ha.draining = True  # what drain() sets on SIGTERM
        ticker.tick(clock())
        assert ticker.fired == 0 and ticks_recorded(store, "draining") == dict.fromkeys(DAYS, 0)
    finally:
        a.close()
    b, ticker = instance("b", tmp_path, store, clock, stub, spec)
    try:
        b.run(until_idle=True, timeout_s=30, consume=False)
    finally:
        b.close()
    assert ticker.fired == 1 and ticks_recorded(store, "draining")["2024-03-28"] == 1
