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

SPEC = parse_spec("""
schedules:
  daily_0600: {cron: "0 6 * * *", timezone: Europe/Berlin, catch_up: all, start: 2024-03-29}
datasets:
  scores: {partitioning: daily}
jobs:
  push: {kind: command, inputs: [schedule.daily_0600, scores], outputs: [pushed], settings: {command: x}}
""")
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


def instance(name: str, tmp_path: Path, store: StateStore, clock: Clock, stub: StubLauncher):
    settings = Settings(home=tmp_path / "home", bus="local", instance_name=name, state_url=store.url)
    coord = Coordinator(SPEC, settings, store=store, launchers={"command": stub}, clock=clock)
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


def ticks_recorded(store: StateStore) -> dict[str, int]:
    with store.begin() as tx:
        return {d: len(tx.version_history("schedule.daily_0600", d)) for d in DAYS}


def push_runs(store: StateStore) -> list[str | None]:
    with store.begin() as tx:
        return sorted(r.partition for r in tx.list_runs("push", limit=None))


def test_two_instances_and_a_restart_record_each_tick_once(tmp_path: Path, store: StateStore):
    publish_scores(tmp_path)
    stub = StubLauncher(kind="command")
    clock = Clock(datetime(2024, 3, 29, 12, tzinfo=UTC))
    a, ticker_a = instance("a", tmp_path, store, clock, stub)
    b, ticker_b = instance("b", tmp_path, store, clock, stub)
    try:
        a.run(until_idle=True, timeout_s=60)  # the scores, and the tick of 03-29 06:00 (start)
        b.run(until_idle=True, timeout_s=60, consume=False)  # the same look: nothing new
        assert (ticker_a.fired, ticker_b.fired) == (1, 0)
        assert push_runs(store) == ["2024-03-28"]
        clock.set(datetime(2024, 3, 31, 12, tzinfo=UTC))  # two days on, B looks first
        b.run(until_idle=True, timeout_s=60, consume=False)
        a.run(until_idle=True, timeout_s=60, consume=False)  # computes the same two ticks
        assert (ticker_a.fired, ticker_b.fired) == (1, 2)
    finally:
        a.close()
    # A restarts after an outage: it catches up from the newest tick recorded, B looks again
    clock.set(datetime(2024, 4, 2, 12, tzinfo=UTC))
    a2, ticker_a2 = instance("a", tmp_path, store, clock, stub)
    try:
        a2.run(until_idle=True, timeout_s=60, consume=False)
        b.run(until_idle=True, timeout_s=60, consume=False)
        assert (ticker_a2.fired, ticker_b.fired) == (2, 2)
    finally:
        a2.close()
        b.close()
    assert ticks_recorded(store) == dict.fromkeys(DAYS, 1)
    assert push_runs(store) == DAYS  # one push per day: the tick AND the scores
    assert sorted(p for j, p in stub.ran("push")) == DAYS


def test_instances_firing_the_same_ticks_at_once_record_each_once(tmp_path: Path, store: StateStore):
    """Ten rounds of two instances recording the same tick in the same instant (threads released
    together): the store's unique event id lets exactly one record it."""
    stub = StubLauncher(kind="command")
    clock = Clock(datetime(2024, 3, 29, 12, tzinfo=UTC))
    a, _ = instance("a", tmp_path, store, clock, stub)
    b, _ = instance("b", tmp_path, store, clock, stub)
    try:
        for coord in (a, b):
            coord.run(until_idle=True, timeout_s=30, consume=False)  # leases, recovery
        for day in range(10):
            at = datetime(2024, 5, 1 + day, 4, tzinfo=UTC)
            tick = Tick("daily_0600", at, at.date().isoformat())
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
