"""The outbox's hold: events wait while jobs start (until none was started for
outbox.LAUNCH_QUIET_S, outbox.MAX_HOLD_S at most), so the bus's work does not compete with the
jobs' start. On the embedded bus and SQLite: what is held reaches the bus once, in order, not
before its time, and the loop's end or a relay hands it on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coordinator import outbox as outbox_module
from coordinator.bus.local import LocalBus
from coordinator.events import CompletionEvent
from coordinator.intake import EventIntake
from coordinator.outbox import Outbox
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.store import StateStore


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    return Settings(home=home, bus="local")


@pytest.fixture
def store(settings: Settings):
    with StateStore(f"sqlite:///{settings.home / 'state.db'}") as s:
        yield s


@pytest.fixture
def outbox(settings: Settings, store: StateStore, monkeypatch):
    monkeypatch.setattr(outbox_module, "LAUNCH_QUIET_S", 0.3)  # spans a test's steps on a busy machine
    monkeypatch.setattr(outbox_module, "MAX_HOLD_S", 60.0)
    publisher = Publisher(LocalBus(settings.home / "bus.db"), settings)
    box = Outbox(store, lambda: publisher)
    box.dirty = False  # nothing from an earlier life: the relay has nothing to do
    yield box
    publisher.close()


def committed(store: StateStore, n: int, tag: str) -> list[CompletionEvent]:
    """Events in the outbox, as a turn's transaction leaves them."""
    events = [CompletionEvent(dataset="mid", partition=f"2024-01-0{i + 1}", producer=tag) for i in range(n)]
    with store.begin() as tx:
        tx.outbox_add(events, 1.0)
    return events


def on_bus(settings: Settings) -> list[str]:
    with EventIntake(
        LocalBus(settings.home / "bus.db"), settings, group_id=f"observer-{time.time_ns()}"
    ) as intake:
        seen: list[str] = []
        while batch := intake.poll(1000, 0.2).events:
            seen += [e.event_id for e in batch]
        return seen


def test_held_events_reach_the_bus_after_a_quiet_spell_in_order(
    settings: Settings, store: StateStore, outbox: Outbox
):
    first, later = committed(store, 2, "launching turn"), committed(store, 1, "next turn")
    outbox.publish(first, started=True)
    outbox.publish(later)  # given while others are held: waits behind them
    assert outbox.holding and not outbox.settled
    outbox.release()
    assert outbox.delivered(wait=True) == [] and on_bus(settings) == []  # not before its time
    time.sleep(0.2)
    outbox.publish([], started=True)  # another start: the quiet spell begins again
    time.sleep(0.2)
    outbox.release()
    assert outbox.holding  # 0.4 s since the first start, 0.2 s since the last
    time.sleep(0.1)
    outbox.release()
    assert not outbox.holding
    assert len(outbox.delivered(wait=True)) == 3
    assert on_bus(settings) == [e.event_id for e in first + later]
    outbox.publish(committed(store, 1, "quiet turn"))  # nothing held, no start: at once
    assert not outbox.holding and len(outbox.delivered(wait=True)) == 1


def test_jobs_started_without_pause_hold_events_for_a_while_only(
    settings: Settings, store: StateStore, outbox: Outbox, monkeypatch
):
    monkeypatch.setattr(outbox_module, "MAX_HOLD_S", 0.3)
    events = committed(store, 2, "launching turn")
    outbox.publish(events[:1], started=True)
    deadline = time.monotonic() + 5
    while outbox.holding and time.monotonic() < deadline:
        outbox.publish([], started=True)  # a start every few milliseconds: never a quiet spell
        outbox.release()
        time.sleep(0.005)
    assert not outbox.holding
    outbox.publish(events[1:], started=True)  # held again, its own while
    assert outbox.holding
    outbox.release(everything=True)
    assert len(outbox.delivered(wait=True)) == 2


def test_the_loops_end_hands_on_what_is_held_and_marks_it_sent(
    settings: Settings, store: StateStore, outbox: Outbox
):
    events = committed(store, 2, "launching turn")
    outbox.publish(events, started=True)
    assert outbox.settle() == 2  # the loop returns: published now, confirmed, marked sent
    assert on_bus(settings) == [e.event_id for e in events]
    with store.begin() as tx:
        assert tx.outbox_pending() == []


def test_a_relay_publishes_what_is_held_once(settings: Settings, store: StateStore, outbox: Outbox):
    events = committed(store, 2, "launching turn")
    outbox.publish(events, started=True)
    outbox.dirty = True  # e.g. a publish the bus refused: the relay sends what the outbox holds
    assert outbox.relay() == 2 and not outbox.holding
    outbox.release(everything=True)
    assert outbox.settle() == 0
    assert on_bus(settings) == [e.event_id for e in events]  # once each


def test_a_stale_lease_leaves_what_is_held_to_the_relay(
    settings: Settings, store: StateStore, outbox: Outbox
):
    events = committed(store, 1, "launching turn")
    outbox.publish(events, started=True)
    outbox.may_publish = lambda: False  # the lease went stale meanwhile
    outbox.release(everything=True)
    assert outbox.dirty and on_bus(settings) == []
    outbox.may_publish = lambda: True
    assert outbox.relay() == 1 and on_bus(settings) == [events[0].event_id]
