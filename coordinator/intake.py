"""Taking completion events off the bus: decode, admit, dead-letter what is bad, hand over the rest.

The engine's side of the bus. `poll` returns a batch whose good events are decoded in bus order
and whose bad messages are already dealt with (coordinator/deadletter.py: on the dead-letter
topic, or booked in the state store as unwritable there, before `poll` returns), so after the
engine has made the batch's effects durable, `commit(batch)` may move the group's offsets past
every message in it. The order is the point: state first, then offsets; a crash in between
replays the batch, which the state store's unique keys (events, and dead letters by source
offset) make harmless.

A message is bad when it does not decode (a tombstone, an empty value, garbage, too large: see
codec.py) or, with a spec, when admission refuses its event (admission.py: unknown_dataset,
bad_partition). Messages whose event id header (set by the Publisher) a `skip` callable claims
are not decoded: the engine's own output events come back this way, already recorded.

Accounting identity, per batch and so for any run:
len(messages) == len(events) + dead_lettered + skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from coordinator.admission import Admission
from coordinator.bus.base import Bus, Consumer, Message
from coordinator.codec import Codec, codec_for
from coordinator.deadletter import DeadLetters, Refused
from coordinator.errors import BusError, EventError
from coordinator.events import EVENT_ID_HEADER, CompletionEvent
from coordinator.store.deadletters import DeadLetterBook

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
    dead_lettered: int = 0  # refused: on the dead-letter topic, or booked unwritable (once each)
    skipped: int = 0  # messages a `skip` claimed by their event id header, not decoded

    def __len__(self) -> int:
        return len(self.messages)


class EventIntake:
    """Consumer group `group_id` (settings.consumer_group by default) on `topics`
    (settings.topic_events by default). With `spec`, events are admitted against it. Dead letters
    are booked in `store` (one is opened from the settings when none is given). The consumer
    joins as a static member named settings.instance_name, so a restarted instance gets its
    partitions back at once. Connects on first poll; a context manager."""

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
        self.admission = Admission(spec) if spec is not None else None
        self.store, self.hooks = store, hooks
        self._own_store: StateStore | None = None
        self._consumer: Consumer | None = None
        self._dead_letters: DeadLetters | None = None

    def _consumer_(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self.bus.consumer(
                self.group_id, self.topics, instance_id=self.settings.instance_name
            )
        return self._consumer

    def _dead_letters_(self) -> DeadLetters:
        if self._dead_letters is None:
            store = self.store
            if store is None:
                from coordinator.store.store import StateStore

                if self.settings.state_url is None:  # the embedded default: a SQLite file under home
                    self.settings.home.mkdir(parents=True, exist_ok=True)
                store = self._own_store = StateStore(self.settings.resolved_state_url())
            self._dead_letters = DeadLetters(
                self.bus, self.settings.topic_dead_letter, self.group_id, DeadLetterBook(store),
                timeout_s=self.settings.dead_letter_timeout_s, hooks=self.hooks,
            )
        return self._dead_letters

    def poll(
        self, max_messages: int = 500, timeout: float = 1.0, skip: Callable[[bytes], bool] | None = None
    ) -> IntakeBatch:
        """The next batch (possibly empty after `timeout`). A bad message never raises: it is
        dead-lettered once and counted. `skip(event_id)` (the header's bytes) True leaves a message
        undecoded. Raises BusError when the bus fails (the messages of that poll are then not lost
        but delivered again by a later poll), StoreError when the state store does."""
        try:
            messages = self._consumer_().poll(max_messages, timeout)
        except BusError:
            # Messages taken from the bus but not handed over must come back: leave the group
            # without committing, and the next poll rejoins from the committed offsets.
            self._drop_consumer()
            raise
        events: list[CompletionEvent] = []
        refused: list[Refused] = []
        skipped = 0
        decode = self.codec.decode
        admission = self.admission
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
                event = decode(message.value)
                if admission is not None:
                    problem = admission.problem(event)
                    if problem is not None:
                        raise problem
            except EventError as error:
                refused.append(Refused(message, error))
                continue
            append(event)
        if refused:
            self._dead_letters_().handle(refused)
        return IntakeBatch(events, messages, len(refused), skipped)

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

    def assigned(self) -> bool:
        """Whether the consumer has joined its group and been given its share, for /readyz (an
        empty share while none of its topics exists yet: nothing was published, nothing waits)."""
        consumer = self._consumer
        return consumer is not None and (consumer.assigned() or consumer.caught_up())

    def wakeup(self) -> None:
        """Make the poll waiting in the loop's thread return now (Consumer.wakeup); any thread."""
        consumer = self._consumer
        if consumer is not None:
            consumer.wakeup()

    def close(self) -> None:
        """Leave the group (uncommitted messages are redelivered)."""
        try:
            if self._dead_letters is not None:
                self._dead_letters.close()
        finally:
            self._dead_letters = None
            if self._own_store is not None:
                self._own_store.close()
                self._own_store = None
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def __enter__(self) -> EventIntake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
