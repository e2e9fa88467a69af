"""Every message a Kafka topic holds now, read to each partition's end.

"Exactly once on the topic" needs all of it: the end is each partition's high watermark taken
before reading (what producers that already flushed or stopped have written is below it), so no
wait for a quiet spell is needed, and the partitions are assigned rather than subscribed (no
consumer-group join to wait for).
"""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import unique


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """The topic's messages (confluent-kafka's, without errors), partition by partition in
    offset order; an AssertionError when the end is not reached within `timeout_s`."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("read-to-end"),
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        read: dict[int, list[Any]] = {p: [] for p in partitions}
        pending = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while pending:
            assert time.monotonic() < deadline, f"{topic}: partitions {sorted(pending)} not read to the end"
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            read[message.partition()].append(message)
            if message.offset() + 1 >= ends[message.partition()]:
                pending.discard(message.partition())
    finally:
        consumer.close()
    return [m for p in sorted(read) for m in read[p]]
