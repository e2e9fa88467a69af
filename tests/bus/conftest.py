"""One parametrized fixture runs every contract test on both adapters: the embedded SQLite log
and the real Kafka broker (marked `kafka`). Each test gets fresh topics and a fresh group."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.bus.base import Bus, TopicSpec
from coordinator.bus.factory import open_bus
from coordinator.codec import Codec
from coordinator.intake import EventIntake, IntakeBatch
from coordinator.publish import Publisher
from coordinator.settings import Settings
from tests.conftest import unique


@dataclass
class BusCase:
    kind: str
    bus: Bus
    settings: Settings
    workdir: Path

    def intake(self, group_id: str | None = None, codec: Codec | None = None) -> EventIntake:
        return EventIntake(self.bus, self.settings, group_id, codec=codec)

    def publisher(self) -> Publisher:
        return Publisher(self.bus, self.settings)

    def env(self) -> dict[str, str]:
        """COORD_* variables that rebuild these settings in a child process."""
        s = self.settings
        return {"COORD_BUS": s.bus, "COORD_HOME": str(s.home), "COORD_TOPIC_EVENTS": s.topic_events,
                "COORD_TOPIC_DEAD_LETTER": s.topic_dead_letter, "COORD_CONSUMER_GROUP": s.consumer_group,
                "COORD_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
                "COORD_MAX_EVENT_BYTES": str(s.max_event_bytes)}


def drain(intake: EventIntake, expected: int, timeout: float = 60.0, commit: bool = True) -> IntakeBatch:
    """Poll until `expected` messages were taken (or `timeout`); everything in one batch."""
    total = IntakeBatch()
    deadline = time.monotonic() + timeout
    while len(total.messages) < expected and time.monotonic() < deadline:
        batch = intake.poll(500, 0.5)
        if commit:
            intake.commit(batch)
        total.events += batch.events
        total.messages += batch.messages
        total.dead_lettered += batch.dead_lettered
    return total


@pytest.fixture(params=["local", pytest.param("kafka", marks=pytest.mark.kafka)])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BusCase]:
    names = dict(topic_events=unique("ev").replace("_", "-"), consumer_group=unique("g"),
                 topic_dead_letter=unique("dl").replace("_", "-"), max_event_bytes=20_000,
                 home=tmp_path / "home")
    if request.param == "local":
        settings = Settings(bus="local", **names)
        yield BusCase("local", open_bus(settings), settings, tmp_path)
        return
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    settings = Settings(bus="kafka", kafka_bootstrap_servers=bootstrap, **names)
    bus = open_bus(settings)
    bus.ensure_topics([TopicSpec(settings.topic_events, 3), TopicSpec(settings.topic_dead_letter, 1)])
    yield BusCase("kafka", bus, settings, tmp_path)
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([settings.topic_events, settings.topic_dead_letter]).values():
        future.result(30)
