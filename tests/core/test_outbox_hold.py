"""The outbox's hold: a turn that started jobs hands its events to the bus only after
outbox.LAUNCH_QUIET_S, so the bus's work does not compete with the jobs' start. On the
embedded bus and SQLite: what is held reaches the bus once, in order, not before its time,
and the loop's end or a relay hands it on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

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
def outbox(settings: Settings, store: StateStore):
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


def test_held_events_reach_the_bus_at_their_time_in_order(
    settings: Settings, store: StateStore, outbox: Outbox
):
    first, later = committed(store, 2, "launching turn"), committed(store, 1, "next turn")
    outbox.publish(first, after=time.monotonic() + 0.3)
    outbox.publish(later)  # given while others are held: waits behind them
    assert outbox.holding and not outbox.settled
    outbox.release()
    assert outbox.delivered(wait=True) == [] and on_bus(settings) == []  # not before its time
    time.sleep(0.3)
    outbox.release()
    assert not outbox.holding
    assert len(outbox.delivered(wait=True)) == 3
    assert on_bus(settings) == [e.event_id for e in first + later]


def test_the_loops_end_hands_on_what_is_held_and_marks_it_sent(
    settings: Settings, store: StateStore, outbox: Outbox
):
    events = committed(store, 2, "launching turn")
    outbox.publish(events, after=time.monotonic() + 60)
    assert outbox.settle() == 2  # the loop returns: published now, confirmed, marked sent
    assert on_bus(settings) == [e.event_id for e in events]
    with store.begin() as tx:
        assert tx.outbox_pending() == []


def test_a_relay_publishes_what_is_held_once(settings: Settings, store: StateStore, outbox: Outbox):
    events = committed(store, 2, "launching turn")
    outbox.publish(events, after=time.monotonic() + 0.05)
    outbox.dirty = True  # e.g. a publish the bus refused: the relay sends what the outbox holds
    assert outbox.relay() == 2 and not outbox.holding
    time.sleep(0.06)
    outbox.release()
    assert outbox.settle() == 0
    assert on_bus(settings) == [e.event_id for e in events]  # once each


def test_a_stale_lease_leaves_what_is_held_to_the_relay(
    settings: Settings, store: StateStore, outbox: Outbox
):
    events = committed(store, 1, "launching turn")
    outbox.publish(events, after=time.monotonic() + 0.05)
    outbox.may_publish = lambda: False  # the lease went stale meanwhile
    time.sleep(0.05)
    outbox.release()
    assert outbox.dirty and on_bus(settings) == []
    outbox.may_publish = lambda: True
    assert outbox.relay() == 1 and on_bus(settings) == [events[0].event_id]
