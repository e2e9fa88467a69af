"""The outbox relay beside live peers, on SQLite and PostgreSQL with the embedded bus: what a
live peer instance committed is its own to publish (it is in flight to it), so a relay — at an
instance's start, or after it adopted a dead lease — leaves those events alone and publishes
only its own, the dead's, and those of no run; once the peer is gone, its events are relayed."""

from __future__ import annotations

import time
from pathlib import Path

from coordinator.bus.local import LocalBus
from coordinator.events import CompletionEvent
from coordinator.intake import EventIntake
from coordinator.outbox import OutboxRelay
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.store import StateStore
from coordinator.store import leases as L
from tests.ha.test_leases import SETTINGS, keeper, running_run


def on_the_bus(bus: LocalBus, settings: Settings, group: str) -> list[str]:
    with EventIntake(bus, settings, group_id=group) as intake:
        return [e.event_id for e in intake.poll(100, 0.5).events]


def test_a_relay_leaves_a_live_peer_s_events_to_it_and_relays_the_dead_s(store: StateStore, tmp_path: Path):
    me, peer, dead = keeper(store, "me"), keeper(store, "peer"), keeper(store, "dead", host="elsewhere")
    for k in (me, peer, dead):
        k.acquire()
    events = {
        name: CompletionEvent(
            dataset=f"out.{name}",
            partition="2024-01-01",
            producer="coordinator",
            producer_run_id=running_run(store, k.id, f"job_{name}"),
        )
        for name, k in (("me", me), ("peer", peer), ("dead", dead))
    }
    events["tick"] = CompletionEvent(dataset="tick", producer="coordinator")  # of no run
    with store.begin() as tx:
        tx.outbox_add(events.values(), time.time())
    time.sleep(SETTINGS["lease_ttl_s"] + 0.2)  # "dead" was never renewed; the others are now
    assert me.renew() and peer.renew()
    with store.begin() as tx:
        [adopted] = L.adopt(tx, me.id, time.time())
    assert adopted.lease.lease_id == dead.id

    settings = Settings(home=tmp_path / "home", bus="local")
    bus = LocalBus(tmp_path / "bus.db")
    with Publisher(bus, settings) as publisher:
        relay = OutboxRelay(store, publisher, lambda tx, evs: L.peers_events(tx, me.id, evs, time.time()))
        assert relay.drain() == 3
        with store.begin() as tx:
            assert [e.event_id for _, e in tx.outbox_pending()] == [events["peer"].event_id]
        assert sorted(on_the_bus(bus, settings, "first")) == sorted(
            events[n].event_id for n in ("me", "dead", "tick")
        )
        assert relay.drain() == 0  # the peer lives on: still its own
        time.sleep(SETTINGS["lease_ttl_s"] + 0.2)  # the peer dies (expired, not adopted yet)
        assert me.renew()
        assert relay.drain() == 1
    everything = on_the_bus(bus, settings, "second")  # each event once, the peer's included
    assert sorted(everything) == sorted(e.event_id for e in events.values())
    with store.begin() as tx:
        assert tx.outbox_count() == 0
