"""The dead-letter topic: where a bus message the coordinator cannot accept goes, never lost.

Each record (topics/dead_letter.v2.avsc) says why the message was refused, where it came from
(topic, partition, offset, consumer group), its key and headers, the size and SHA-256 of its
value, and as much of the original bytes as the dead-letter topic can hold: a record must fit
the topic's `max.message.bytes` (and the message the coordinator refused may be as large as
its own topic allows), so what does not fit is cut and `truncated` names what was cut. The
reason also travels as a message header, to filter without decoding.

The policy when a dead letter cannot be written (the order intake follows, per batch):
1. Look the batch's refused messages up in the state store (store/deadletters.py): one already
   there was handled before a crash or rebalance and is not written again.
2. Write the others, each tried for `timeout_s` (settings.dead_letter_timeout_s, 10 s by default;
   the producer retries what is retriable in that time, a refusal such as "too large" ends it
   at once). So good events behind a bad one wait at most that long (plus a second of margin).
3. Record every one in the state store: `written`, or `unwritable` with the topic's error and the
   message's coordinates, reason, size and hash, so nothing is dropped without a trace. Each
   unwritable one is logged as an error and given to the hooks (`dead_letter_unwritable`: the
   metric coord_dead_letters_unwritable_total and an alert), and the loop moves on.
4. Only then are the batch's offsets committed (intake's caller does that).
A crash between 2 and 3 can write a dead letter again on restart (the topic took it, the store
had not recorded it yet); readers can tell by the source coordinates, which repeat exactly.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coordinator.bus.base import Bus, Message, Producer
from coordinator.codec import decode_dead_letter, encode_dead_letter, utcnow
from coordinator.errors import BusError, EventError
from coordinator.store.deadletters import UNWRITABLE, WRITTEN, DeadLetterBook, DeadLetterRow

log = logging.getLogger(__name__)

REASON_HEADER = "coord-reason"
# Kafka's record batch and record framing, the dead letter's own key and header: what a message
# costs beyond its value, with room to spare (the broker counts the batch against the limit)
_FRAMING = 1024
_LENGTH_SLACK = 16  # an Avro length prefix that grows by a few bytes is still inside the room


@dataclass(slots=True)
class Refused:
    message: Message
    error: EventError


def dead_letter_record(
    message: Message, error: EventError, group_id: str, limit: int | None
) -> tuple[dict[str, Any], bytes]:
    """The record for `message` and its encoding, cut to fit `limit` bytes (None: no limit).
    The value is cut first, then the headers, then the key; `truncated` names what was cut."""
    value, key = message.value, message.key
    headers = [{"name": name, "value": data} for name, data in message.headers]
    record: dict[str, Any] = {
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset,
        "key": key,
        "value": None if value is None else bytes(value),
        "reason": error.reason,
        "detail": error.detail[:2000],
        "consumer_group": group_id,
        "dead_lettered_at": utcnow(),
        "headers": headers,
        "value_size": 0 if value is None else len(value),
        "value_sha256": None if value is None else hashlib.sha256(value).hexdigest(),
        "key_size": 0 if key is None else len(key),
        "truncated": [],
    }
    data = encode_dead_letter(record)
    if limit is None:
        return record, data
    room = limit - _FRAMING - len(message.topic)
    for field in ("value", "headers", "key"):
        excess = len(data) - room
        if excess <= 0:
            break
        kept = record[field]
        if not kept:
            continue
        if field == "headers":
            record["headers"] = []
        else:
            record[field] = kept[: max(0, len(kept) - excess - _LENGTH_SLACK)]
        record["truncated"].append(field)
        data = encode_dead_letter(record)
    return record, data


class DeadLetters:
    """Writes refused messages to `topic` and books each in the state store (see the policy above).
    The producer is made on first use, sized for the topic's limit; a context manager."""

    def __init__(
        self,
        bus: Bus,
        topic: str,
        group_id: str,
        book: DeadLetterBook,
        *,
        timeout_s: float = 10.0,
        hooks: Any = None,
        clock: Any = time.time,
    ) -> None:
        self.bus, self.topic, self.group_id, self.book = bus, topic, group_id, book
        self.timeout_s, self.hooks, self.clock = timeout_s, hooks, clock
        self._producer: Producer | None = None
        self._limit: int | None = None
        self._limit_known = False

    @property
    def limit(self) -> int | None:
        """The largest message the dead-letter topic takes (None: the bus has no limit)."""
        if not self._limit_known:
            self._limit = self.bus.max_message_bytes(self.topic)
            self._limit_known = True
        return self._limit

    def _producer_(self) -> Producer:
        if self._producer is None:
            self._producer = self.bus.producer(
                max_message_bytes=self.limit, delivery_timeout_s=self.timeout_s
            )
        return self._producer

    def handle(self, refused: Sequence[Refused]) -> int:
        """Dead-letter each refused message once; returns how many were new (not booked before).
        Raises StoreError when the state store fails (nothing is then committed: the batch comes
        back, and the store decides again). Never raises for the dead-letter topic."""
        seen = self.book.known(self.group_id, ((r.message.topic, r.message.partition, r.message.offset)
                                               for r in refused))
        fresh: list[Refused] = []
        booked = set(seen)
        for item in refused:
            coordinates = (item.message.topic, item.message.partition, item.message.offset)
            if coordinates in booked:
                log.info("bus message %s:%d@%d was dead-lettered before; not again", *coordinates)
                continue
            booked.add(coordinates)  # the same message twice in one batch (a redelivery) counts once
            fresh.append(item)
        if not fresh:
            return 0
        outcomes = self._write(fresh)
        rows = []
        for item, error in zip(fresh, outcomes, strict=True):
            m = item.message
            rows.append(
                DeadLetterRow(
                    m.topic, m.partition, m.offset, item.error.reason, item.error.detail,
                    0 if m.value is None else len(m.value),
                    None if m.value is None else hashlib.sha256(m.value).hexdigest(),
                    WRITTEN if error is None else UNWRITABLE, error,
                )
            )
        self.book.record(self.group_id, rows, self.clock())
        for row in rows:
            if row.state == UNWRITABLE:
                log.error(
                    "bus message %s:%d@%d (%s, %d bytes) could not be written to the dead-letter topic %s: "
                    "%s; kept in the state store's coord_dead_letters and skipped",
                    row.topic, row.partition, row.offset, row.reason, row.size, self.topic, row.error,
                )
                if self.hooks is not None:
                    self.hooks.emit("dead_letter_unwritable", row)
        return len(fresh)

    def _write(self, refused: Sequence[Refused]) -> list[str | None]:
        """Produce every record and wait for the topic; per record None (written) or why not."""
        outcomes: list[str | None] = ["not acknowledged in time"] * len(refused)
        try:
            producer = self._producer_()
        except BusError as exc:
            return [f"no producer: {exc}"] * len(refused)

        def delivered(i: int):
            def report(error: str | None) -> None:
                outcomes[i] = error

            return report

        for i, item in enumerate(refused):
            _record, data = dead_letter_record(item.message, item.error, self.group_id, self.limit)
            try:
                producer.produce(
                    self.topic,
                    data,
                    key=item.message.topic.encode(),
                    headers=[(REASON_HEADER, item.error.reason.encode())],
                    on_delivery=delivered(i),
                )
            except BusError as exc:  # refused before it left (e.g. larger than the producer allows)
                outcomes[i] = str(exc)
        try:
            producer.flush(self.timeout_s + 1.0)
        except BusError as exc:  # the per-record outcomes say which; a producer in trouble is remade
            log.warning("dead-letter topic %s: %s", self.topic, exc)
            self._drop_producer()
        return outcomes

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(0.0)
            except BusError as exc:
                log.info("closing the dead-letter producer: %s", exc)

    def close(self) -> None:
        self._drop_producer()

    def __enter__(self) -> DeadLetters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_dead_letter(message: Message) -> dict[str, Any]:
    """The record in a dead-letter topic message (see topics/dead_letter.v2.avsc)."""
    return decode_dead_letter(message.value)
