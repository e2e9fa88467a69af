"""The engine's Kafka consumer on a thread of its own (bus/kafka_wake.py), on the real broker: a
wakeup ends a waiting poll at once, messages come in their order, offsets move only by commit
(a consumer closed with messages still buffered gives them back to the group), and caught_up
means everything read has been handed over."""

from __future__ import annotations

import threading
import time

from coordinator.bus.kafka import KafkaBus
from coordinator.bus.kafka_wake import PolledConsumer, WokenBus
from tests.conftest import unique


def _produce(bus: KafkaBus, topic: str, values: list[bytes]) -> None:
    producer = bus.producer()
    for value in values:
        producer.produce(topic, value, key=b"one-key")  # one partition: one order
    producer.flush()


def _take(consumer, want: int, timeout_s: float = 30.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += consumer.poll(want - len(got), timeout=0.5)
    return got


def test_a_kafka_consumer_is_woken_keeps_order_and_commits(kafka_bootstrap: str, kafka_topic: str) -> None:
    bus, group = KafkaBus(kafka_bootstrap), unique("wake")
    consumer = WokenBus(bus).consumer(group, [kafka_topic])
    assert isinstance(consumer, PolledConsumer)
    values = [f"m{i}".encode() for i in range(20)]
    _produce(bus, kafka_topic, values)
    first = _take(consumer, 10)
    assert [m.value for m in first] == values[:10]
    consumer.commit(first, wait=True)

    rest = _take(consumer, 10)
    assert [m.value for m in rest] == values[10:]
    assert consumer.caught_up()
    assert consumer.poll(10, timeout=0.01) == []
    threading.Timer(0.3, consumer.wakeup).start()  # a job ended: the loop has work besides the bus
    started = time.monotonic()
    assert consumer.poll(10, timeout=10.0) == []
    assert 0.25 < time.monotonic() - started < 3.0  # woken, not timed out
    consumer.close()  # rest was never committed: the group gets it again

    again = WokenBus(bus).consumer(group, [kafka_topic])
    replayed = _take(again, 10)
    assert [m.value for m in replayed] == values[10:]
    again.commit(replayed, wait=False)  # in the background; close makes sure of it
    again.close()
    last = WokenBus(bus).consumer(group, [kafka_topic])
    assert last.poll(10, timeout=3.0) == []
    last.close()
