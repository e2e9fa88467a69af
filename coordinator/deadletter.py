"""The dead-letter topic: where a bus message the coordinator cannot accept goes, never lost.

Each record (topics/dead_letter.v1.avsc) keeps the original bytes untouched, where they came
from (topic, partition, offset) and why they were refused, so an operator can fix the producer
and replay. The reason also travels as a message header, to filter without decoding.
"""

from __future__ import annotations

from typing import Any

from coordinator.bus.base import Message, Producer
from coordinator.codec import decode_dead_letter, encode_dead_letter, utcnow
from coordinator.errors import EventError

REASON_HEADER = "coord-reason"


class DeadLetters:
    """Writes refused messages to `topic` through `producer` (the caller flushes)."""

    def __init__(self, producer: Producer, topic: str, group_id: str = "") -> None:
        self.producer, self.topic, self.group_id = producer, topic, group_id

    def send(self, message: Message, error: EventError) -> None:
        record = {
            "source_topic": message.topic,
            "source_partition": message.partition,
            "source_offset": message.offset,
            "key": message.key,
            "value": bytes(message.value),
            "reason": error.reason,
            "detail": error.detail[:2000],
            "consumer_group": self.group_id,
            "dead_lettered_at": utcnow(),
        }
        self.producer.produce(
            self.topic,
            encode_dead_letter(record),
            key=message.topic.encode(),
            headers=[(REASON_HEADER, error.reason.encode())],
        )


def read_dead_letter(message: Message) -> dict[str, Any]:
    """The record in a dead-letter topic message (see topics/dead_letter.v1.avsc)."""
    return decode_dead_letter(message.value)
