"""Topic-level operations of the Kafka bus, apart from producing and consuming: creating the
coordinator's topics, reading a topic's message size limit, and reading the tail of a topic in
no group (to find what a crash may have left written). Each takes the bus's librdkafka config
and maps every driver exception to BusError (bus/kafka_errors.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer as _KConsumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from coordinator.bus.base import Message, TopicSpec
from coordinator.bus.kafka_errors import DriverLog, bus_error, retriable
from coordinator.errors import BusError

log = logging.getLogger("coordinator.bus.kafka")
_driver_log = DriverLog()
# What a broker's own default max.message.bytes lets through, when a topic cannot be described
# (not created yet): librdkafka's default message.max.bytes, a little under the broker's 1048588
DEFAULT_MESSAGE_LIMIT = 1_000_000


def _admin(config: Mapping[str, Any]) -> AdminClient:
    try:
        return AdminClient({**config, "logger": _driver_log})
    except (KafkaException, ValueError, TypeError) as exc:
        raise bus_error("creating an admin client", exc) from exc


def max_message_bytes(config: Mapping[str, Any], topic: str) -> int:
    """The topic's max.message.bytes; a topic that cannot be described yet is taken to have the
    broker's default."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        admin = _admin(config)  # kept while its futures are awaited: a dropped client cancels them
        future = admin.describe_configs([resource], request_timeout=10)[resource]
        entry = future.result(15).get("max.message.bytes")
        return int(entry.value) if entry is not None and entry.value else DEFAULT_MESSAGE_LIMIT
    except (KafkaException, TimeoutError, ValueError) as exc:
        log.info("kafka: cannot read max.message.bytes of %s (%s); assuming %d", topic, exc,
                 DEFAULT_MESSAGE_LIMIT)
        return DEFAULT_MESSAGE_LIMIT


def read_tail(config: Mapping[str, Any], topic: str, last: int, timeout: float = 30.0) -> list[Message]:
    """The last `last` messages of each partition: assigned (no group membership, nothing
    committed) from `last` before each partition's end, read until that end (or the partition's
    EOF, past transaction markers)."""
    reader_config = {**config, "group.id": "coord-read-tail", "enable.auto.commit": False,
                     "enable.partition.eof": True, "logger": _driver_log}
    try:
        consumer = _KConsumer(reader_config)
    except (KafkaException, ValueError, TypeError) as exc:
        raise bus_error("creating a reader", exc) from exc
    try:
        described = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if described is None or described.error is not None:
            return []
        ends, start = {}, []
        for p in described.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                start.append(TopicPartition(topic, p, max(low, high - last)))
        if not start:
            return []
        consumer.assign(start)
        out: list[Message] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise BusError(f"kafka: the end of {topic} not read in {timeout:g} s")
            for m in consumer.consume(500, 0.5):
                error = m.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done.add(m.partition())
                        continue
                    raise BusError(f"kafka reading {topic} failed: {error}", retriable=retriable(error))
                out.append(Message(topic, m.partition(), m.offset(), m.key(), m.value(),
                                   tuple(m.headers() or ()), m.timestamp()[1]))
                if m.offset() + 1 >= ends[m.partition()]:
                    done.add(m.partition())
        return out
    except (KafkaException, RuntimeError) as exc:
        raise bus_error(f"reading {topic}", exc) from exc
    finally:
        consumer.close()


def ensure_topics(config: Mapping[str, Any], topics: Sequence[TopicSpec], timeout: float, where: str) -> None:
    """Create the topics that do not exist yet (an existing one is left alone)."""
    if not topics:
        return
    try:
        admin = _admin(config)  # kept while its futures are awaited: a dropped client cancels them
        futures = admin.create_topics(
            [
                NewTopic(t.name, num_partitions=t.partitions, replication_factor=-1,
                         config={"retention.ms": str(t.retention_ms), **t.config})
                for t in topics
            ],
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise bus_error(f"creating topic {name}", exc) from exc
            except TimeoutError as exc:
                raise BusError(
                    f"kafka: cannot reach Kafka at {where}: no answer creating topic {name} in {timeout:g} s",
                    retriable=False,
                ) from exc
    except (KafkaException, ValueError, TypeError) as exc:
        raise bus_error("creating topics", exc) from exc
