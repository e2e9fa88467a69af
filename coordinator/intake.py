"""Taking completion events off the bus: decode, dead-letter what is bad, hand over the rest.

The engine's side of the bus. `poll` returns a batch whose good events are decoded in bus order
and whose bad messages are already on the dead-letter topic (flushed before `poll` returns), so
after the engine has made the batch's effects durable, `commit(batch)` may move the group's
offsets past every message in it. The order is the point: state first, then offsets; a crash
in between replays the batch, which the state store's unique keys make harmless.

Messages whose event id header (set by the Publisher) a `skip` callable claims are not decoded:
the engine's own output events come back this way, already recorded with their run.

Accounting identity, per batch and so for any run:
len(messages) == len(events) + dead_lettered + skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from coordinator.bus.base import Bus, Consumer, Message, Producer
from coordinator.codec import Codec, codec_for
from coordinator.deadletter import DeadLetters
from coordinator.errors import BusError, EventError
from coordinator.events import EVENT_ID_HEADER, CompletionEvent

if TYPE_CHECKING:
    from coordinator.hooks import Hooks
    from coordinator.settings import Settings
    from coordinator.spec.models import PipelineSpec
    from coordinator.store.store import StateStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IntakeBatch:
    events: list[CompletionEvent] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    dead_lettered: int = 0
    skipped: int = 0  # messages a `skip` claimed by their event id header, not decoded

    def __len__(self) -> int:
        return len(self.messages)


class EventIntake:
    """Consumer group `group_id` (settings.consumer_group by default) on `topics`
    (settings.topic_events by default). Connects on first poll; a context manager."""

    dead_letter_timeout_s = 120.0  # how long poll waits for dead letters to be durable (rides out outages)

    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        group_id: str | None = None,
        topics: Sequence[str] | None = None,
        *,
        codec: Codec | None = None,
        spec: PipelineSpec | None = None,
        store: StateStore | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.bus, self.settings = bus, settings
        self.group_id = group_id or settings.consumer_group
        self.topics = list(topics) if topics else [settings.topic_events]
        self.codec = codec or codec_for(settings)
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._dead_letters: DeadLetters | None = None
        self.spec, self.store, self.hooks = spec, store, hooks

    def _consumer_(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self.bus.consumer(self.group_id, self.topics)
        return self._consumer

    def _dead_letters_(self) -> DeadLetters:
        if self._dead_letters is None:
            self._producer = self.bus.producer()
            self._dead_letters = DeadLetters(self._producer, self.settings.topic_dead_letter, self.group_id)
        return self._dead_letters

    def poll(
        self, max_messages: int = 500, timeout: float = 1.0, skip: Callable[[bytes], bool] | None = None
    ) -> IntakeBatch:
        """The next batch (possibly empty after `timeout`). A bad message never raises: it is
        dead-lettered and counted. `skip(event_id)` (the header's bytes) True leaves a message
        undecoded. Raises BusError when the bus fails; the messages of that poll are then not
        lost but delivered again by a later poll."""
        try:
            messages = self._consumer_().poll(max_messages, timeout)
            events: list[CompletionEvent] = []
            dead = skipped = 0
            decode = self.codec.decode
            append = events.append
            for message in messages:
                if skip is not None and message.headers:
                    event_id = None
                    for name, value in message.headers:
                        if name == EVENT_ID_HEADER:
                            event_id = value
                            break
                    if event_id is not None and skip(event_id):
                        skipped += 1
                        continue
                try:
                    append(decode(message.value))
                except EventError as error:
                    self._dead_letters_().send(message, error)
                    dead += 1
            if dead:
                assert self._producer is not None
                self._producer.flush(self.dead_letter_timeout_s)
        except BusError:
            # Messages taken from the bus but not handed over must come back: leave the group
            # without committing, and the next poll rejoins from the committed offsets.
            self._drop_consumer()
            raise
        return IntakeBatch(events, messages, dead, skipped)

    def _drop_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except BusError as exc:
                log.warning("closing the consumer after a bus error failed too: %s", exc)

    def commit(self, batch: IntakeBatch, wait: bool = True) -> None:
        """Commit the offsets past every message of `batch`. Raises BusError. `wait=False` lets the
        bus confirm in the background: a commit lost to a crash only replays an already recorded
        batch, which the state store ignores."""
        if batch.messages:
            self._consumer_().commit(batch.messages, wait=wait)

    def lag(self) -> int | None:
        return self._consumer_().lag()

    def caught_up(self) -> bool:
        """Whether the consumer has its partitions and has read everything in them: an empty
        assignment during a rebalance is not "nothing to read"."""
        return self._consumer_().caught_up()

    def close(self) -> None:
        """Leave the group (uncommitted messages are redelivered) and flush dead letters."""
        try:
            if self._producer is not None:
                self._producer.close()
        finally:
            self._producer = self._dead_letters = None
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def __enter__(self) -> EventIntake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
