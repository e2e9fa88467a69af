"""An outbox row that can never be encoded (over max_event_bytes) neither stops the relay nor
holds back the events behind it: it leaves the outbox with an error naming it, the others reach
the bus. On the embedded bus and SQLite."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coordinator.bus.local import LocalBus
from coordinator.events import CompletionEvent
from coordinator.outbox import Outbox
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.store import StateStore
from tests.core.test_outbox_hold import on_bus


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    return Settings(home=home, bus="local", max_event_bytes=5000)


@pytest.fixture
def store(settings: Settings):
    with StateStore(f"sqlite:///{settings.home / 'state.db'}") as s:
        yield s


@pytest.fixture
def outbox(settings: Settings, store: StateStore):
    publisher = Publisher(LocalBus(settings.home / "bus.db"), settings)
    yield Outbox(store, lambda: publisher)
    publisher.close()


def _events() -> list[CompletionEvent]:
    small = [CompletionEvent(dataset="mid", partition=f"2024-01-0{i}", producer="t") for i in (1, 2)]
    big = CompletionEvent(dataset="mid", partition="2024-01-03", producer="t", error="y" * 6000)
    return [small[0], big, small[1]]


def test_the_relay_drops_an_oversized_row_and_sends_the_others(settings, store, outbox, caplog) -> None:
    first, big, last = _events()
    with store.begin() as tx:
        tx.outbox_add([first, big, last], 1.0)
    with caplog.at_level(logging.ERROR, logger="coordinator.engine"):
        assert outbox.relay() == 2
    assert sorted(on_bus(settings)) == sorted([first.event_id, last.event_id])
    with store.begin() as tx:
        assert tx.outbox_pending() == []
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert big.event_id in record.getMessage() and "oversized" in record.getMessage()


def test_a_turn_s_publish_of_an_oversized_event_leaves_the_rest_to_the_relay(settings, store, outbox) -> None:
    events = _events()
    with store.begin() as tx:
        tx.outbox_add(events, 1.0)
    outbox.dirty = False
    outbox.publish(events)  # publish_many queues none of them: no exception, the relay's turn
    assert outbox.dirty
    assert outbox.relay() == 2
    assert sorted(on_bus(settings)) == sorted([events[0].event_id, events[2].event_id])
