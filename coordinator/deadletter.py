"""The dead-letter topic: where a bus message the coordinator cannot accept goes, never lost.

Each record (topics/dead_letter.v2.avsc) says why the message was refused, where it came from
(topic, partition, offset, consumer group), its key and headers, the size and SHA-256 of its
value, and as much of the original bytes as the dead-letter topic can hold: a record must fit
the topic's `max.message.bytes` (and the message the coordinator refused may be as large as
its own topic allows), so what does not fit is cut and `truncated` names what was cut. The
reason also travels as a message header, to filter without decoding.

The order intake follows, per batch, and the policy when a dead letter cannot be written:
1. Look the batch's refused messages up in the state store (store/deadletters.py): one booked
   written or unwritable was handled before a crash or rebalance and is not written again; one
   booked pending was being written when a process died: it is looked for among the last
   `TAIL` records of the dead-letter topic, settled written if there, written if not.
2. Book the new ones pending, then write them, each tried for `timeout_s`
   (settings.dead_letter_timeout_s, 10 s by default; the producer retries what is retriable in
   that time, a refusal such as "too large" ends it at once). So good events behind a bad one
   wait at most that long (plus a second of margin).
3. Settle each: `written`, or `unwritable` with the topic's error beside the message's
   coordinates, reason, size and hash, so nothing is dropped without a trace. Each unwritable one
   is logged as an error and given to the hooks (`dead_letter_unwritable`: the metric
   coord_dead_letters_unwritable_total and an alert), and the loop moves on.
4. Only then are the batch's offsets committed (intake's caller does that).
So a crash anywhere writes each dead letter once. What can still repeat one: a dead-letter topic
that cannot be read back after a crash (written again rather than lost), more than `TAIL` dead
letters written by others between the crash and the restart, or a rebalance that hands the
partition to another instance while this one is still writing (each finds it pending).
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
from coordinator.store.deadletters import (
    PENDING,
    UNWRITABLE,
    WRITTEN,
    Coordinates,
    DeadLetterBook,
    DeadLetterRow,
)

log = logging.getLogger(__name__)

REASON_HEADER = "coord-reason"
# Kafka's record batch and record framing, the dead letter's own key and header: what a message
# costs beyond its value, with room to spare (the broker counts the batch against the limit)
_FRAMING = 1024
_LENGTH_SLACK = 16  # an Avro length prefix that grows by a few bytes is still inside the room
TAIL = 10_000  # how far back, per partition, a dead letter a crash left unbooked is looked for


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
        states = self.book.states(self.group_id, (_coordinates(r.message) for r in refused))
        fresh: list[Refused] = []
        interrupted: list[Refused] = []
        taken: set[Coordinates] = set()
        for item in refused:
            coordinates = _coordinates(item.message)
            if coordinates in taken:  # the same message twice in one batch (a redelivery) counts once
                continue
            taken.add(coordinates)
            state = states.get(coordinates)
            if state is None:
                fresh.append(item)
            elif state == PENDING:
                interrupted.append(item)
            else:
                log.info("bus message %s:%d@%d was dead-lettered before; not again", *coordinates)
        again = self._not_on_the_topic(interrupted) if interrupted else []
        if fresh:  # the intent first: a crash from here on leaves them pending, not unknown
            self.book.record(self.group_id, [_row(item, PENDING) for item in fresh], self.clock())
        writing = fresh + again
        if not writing:
            return 0
        outcomes = self._write(writing)
        self.book.settle(
            self.group_id,
            [(_coordinates(item.message), WRITTEN if error is None else UNWRITABLE, error)
             for item, error in zip(writing, outcomes, strict=True)],
        )
        for item, error in zip(writing, outcomes, strict=True):
            if error is None:
                continue
            row = _row(item, UNWRITABLE, error)
            log.error(
                "bus message %s:%d@%d (%s, %d bytes) could not be written to the dead-letter topic %s: "
                "%s; kept in the state store's coord_dead_letters and skipped",
                row.topic, row.partition, row.offset, row.reason, row.size, self.topic, row.error,
            )
            if self.hooks is not None:
                self.hooks.emit("dead_letter_unwritable", row)
        return len(fresh)

    def _not_on_the_topic(self, interrupted: Sequence[Refused]) -> list[Refused]:
        """Of messages a crash left booked pending, those whose dead letter is not among the last
        ones on the topic (those that are there are settled written). When the topic cannot be
        read, all of them: written twice rather than not at all."""
        wanted = {_coordinates(item.message) for item in interrupted}
        found: set[Coordinates] = set()
        try:
            for message in self.bus.read_tail(self.topic, TAIL):
                try:
                    record = decode_dead_letter(message.value)
                except EventError:
                    continue
                if record.get("consumer_group") == self.group_id:
                    found.add((record["source_topic"], record["source_partition"], record["source_offset"]))
        except BusError as exc:
            log.warning("dead-letter topic %s not readable (%s): interrupted dead letters are written again",
                        self.topic, exc)
        found &= wanted
        if found:
            log.info("%d dead letters a crash left unbooked were written already", len(found))
            self.book.settle(self.group_id, [(c, WRITTEN, None) for c in sorted(found)])
        return [item for item in interrupted if _coordinates(item.message) not in found]

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


def _coordinates(message: Message) -> Coordinates:
    return message.topic, message.partition, message.offset


def _row(item: Refused, state: str, error: str | None = None) -> DeadLetterRow:
    m = item.message
    return DeadLetterRow(
        m.topic, m.partition, m.offset, item.error.reason, item.error.detail,
        0 if m.value is None else len(m.value),
        None if m.value is None else hashlib.sha256(m.value).hexdigest(),
        state, error,
    )


def read_dead_letter(message: Message) -> dict[str, Any]:
    """The record in a dead-letter topic message (see topics/dead_letter.v2.avsc)."""
    return decode_dead_letter(message.value)
