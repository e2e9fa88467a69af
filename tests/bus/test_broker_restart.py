"""Stopping and restarting the Kafka broker while events flow loses nothing.

Runs on a private broker (tests/bus/broker.py), never the shared one: events are published
before, during and after an outage, with bad messages mixed in, while an EventIntake consumes
and commits in a thread that rides out the outage."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from coordinator.bus.base import TopicSpec
from coordinator.bus.factory import open_bus
from coordinator.codec import decode_dead_letter
from coordinator.errors import BusError
from coordinator.events import CompletionEvent
from coordinator.intake import EventIntake
from coordinator.publish import Publisher
from coordinator.settings import Settings
from tests.bus.badinput import bad_values, registry_codec
from tests.bus.broker import LIBS, PrivateBroker
from tests.conftest import missing

pytestmark = pytest.mark.kafka


class Taker(threading.Thread):
    """Consumes and commits until told to stop; remembers every message and event it took."""

    def __init__(self, intake: EventIntake) -> None:
        super().__init__(daemon=True)
        self.intake = intake
        self.offsets: set[tuple[int, int]] = set()
        self.event_ids: set[str] = set()
        self.bus_errors = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                batch = self.intake.poll(500, 0.5)
                self.intake.commit(batch)
            except BusError:
                self.bus_errors += 1
                time.sleep(0.5)
                continue
            self.event_ids.update(e.event_id for e in batch.events)
            for m in batch.messages:
                self.offsets.add((m.partition, m.offset))


def _phase(publisher: Publisher, start: int, count: int, good: set[str], max_bytes: int) -> int:
    bad = 0
    kinds = list(bad_values(max_bytes))
    for i in range(start, start + count):
        if i % 10 == 3:
            value = bad_values(max_bytes, i)[kinds[i % len(kinds)]]
            publisher.producer.produce(publisher.topic, value, key=b"bad")
            bad += 1
        else:
            event = CompletionEvent(dataset=f"ds.{i % 7}", partition=str(i), row_count=i)
            good.add(event.event_id)
            publisher.publish(event)
    return bad


def test_broker_stop_and_restart_loses_nothing(tmp_path: Path) -> None:
    if not (LIBS / ".complete").exists() or shutil.which("java") is None:
        missing("a private Kafka broker", "needs the jars of `scripts/services up kafka` and Java")
    broker = PrivateBroker(tmp_path / "kafka")
    broker.start()
    try:
        settings = Settings(bus="kafka", kafka_bootstrap_servers=broker.bootstrap, home=tmp_path / "home",
                            topic_events="ev", topic_dead_letter="dl", consumer_group="g",
                            max_event_bytes=20_000)
        bus = open_bus(settings)
        bus.ensure_topics([TopicSpec("ev", 3), TopicSpec("dl", 1)])
        good: set[str] = set()
        taker = Taker(EventIntake(bus, settings, codec=registry_codec(settings.max_event_bytes)))
        taker.start()
        with Publisher(bus, settings) as publisher:
            bad = _phase(publisher, 0, 1000, good, settings.max_event_bytes)
            publisher.flush()
            deadline = time.monotonic() + 30
            while len(taker.offsets) < 500 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert taker.offsets, "the consumer took nothing before the outage"

            broker.stop()
            bad += _phase(publisher, 1000, 1000, good, settings.max_event_bytes)  # queued while down
            time.sleep(2)  # the consumer polls (and finds nothing) during the outage
            broker.start()
            bad += _phase(publisher, 2000, 1000, good, settings.max_event_bytes)
            publisher.flush(60)

        deadline = time.monotonic() + 60
        while len(taker.offsets) < 3000 and time.monotonic() < deadline:
            time.sleep(0.2)
        taker.stopping.set()
        taker.join(30)
        taker.intake.close()

        assert len(taker.offsets) == 3000          # every message published was taken, once or more
        assert taker.event_ids == good             # every good event reached the consumer
        dead_letters = set()
        with bus.consumer("dl-reader", ["dl"]) as reader:
            deadline = time.monotonic() + 30
            while len(dead_letters) < bad and time.monotonic() < deadline:
                for m in reader.poll(500, 0.5):
                    record = decode_dead_letter(m.value)
                    dead_letters.add((record["source_partition"], record["source_offset"]))
        assert len(dead_letters) == bad
        # events in = events processed + events dead-lettered (each counted once: at-least-once may repeat)
        assert len(taker.offsets) == len(taker.event_ids) + len(dead_letters)
    finally:
        broker.stop()
