"""The event bus interface: raw bytes in, raw bytes out, at-least-once.

Adapters (coordinator/bus/kafka.py, coordinator/bus/local.py) implement it; the codec and
the engine sit above it and never see a driver type. Every adapter maps its driver's
exceptions into `BusError`.

Delivery contract, shared by all adapters and checked by tests/bus contract tests:
- A message is delivered to a consumer group again until that group commits an offset past it
  (a consumer that dies before `commit` sees the message again after restart).
- Messages with the same key on the same topic are delivered in publish order.
- `Producer.flush` returns only when every message produced before it is durable on the bus,
  or raises `BusError`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class Message(NamedTuple):
    """One message as an adapter hands it over. A named tuple, not a frozen dataclass: a consumer
    builds one per message, and a frozen dataclass's __init__ (a guarded setattr per field) cost
    more than the raw consume of the message itself (1.4 µs against 0.16)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a Kafka tombstone (intake dead-letters it; producers never send one)
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int = 3
    retention_ms: int = 7 * 24 * 3600 * 1000
    config: dict[str, str] = field(default_factory=dict)


Delivered = Callable[[str | None], None]  # called with None once the bus has the message, else why not


class DeliveryFailure(str):
    """The reason a `Delivered` callback gets when the bus did not take a message, with whether
    trying again may help (a plain `str` when the adapter cannot tell)."""

    retriable: bool = True

    def __new__(cls, reason: str, retriable: bool = True) -> DeliveryFailure:
        failure = super().__new__(cls, reason)
        failure.retriable = retriable
        return failure


class Producer(abc.ABC):
    @abc.abstractmethod
    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        on_delivery: Delivered | None = None,
    ) -> None:
        """Queue one message; may block briefly for backpressure. Raises BusError.
        `on_delivery` is called (from `poll` or `flush`, on the caller's thread) when the
        message is durable on the bus, or with the reason it could not be."""

    @abc.abstractmethod
    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything produced so far is durable. Raises BusError on failure or timeout."""

    @abc.abstractmethod
    def poll(self) -> None:
        """Serve the delivery callbacks of what the bus has confirmed so far, without waiting
        for the rest. Raises BusError."""

    def close(self, timeout: float = 30.0) -> None:
        """Flush (for at most `timeout` seconds, raising BusError like `flush`) and let go."""
        self.flush(timeout)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Consumer(abc.ABC):
    @abc.abstractmethod
    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Message]:
        """Up to `max_messages` messages, waiting at most `timeout` seconds for the first. Raises BusError."""

    @abc.abstractmethod
    def commit(self, messages: Sequence[Message], wait: bool = True) -> None:
        """Mark these messages (and all before them in their partitions) processed; with `wait`
        (the default) only returns once the bus has stored it. Without, the bus stores it in the
        background, and `close` makes sure the last one is stored."""

    @abc.abstractmethod
    def close(self) -> None:
        """Leave the group; uncommitted messages will be redelivered to the group."""

    def lag(self) -> int | None:
        """Messages not yet consumed by this group, when the adapter can tell."""
        return None

    def caught_up(self) -> bool:
        """Whether this consumer has its share of the topics and has read all of it (the end
        offsets as of now, so also those it had when it started). Raises BusError."""
        return not self.lag()

    def assigned(self) -> bool:
        """Whether the consumer has been given its share of the topics (an adapter with groups
        says False until its first assignment)."""
        return True

    def wakeup(self) -> None:
        """Make a `poll` waiting in another thread return now (its batch possibly empty), e.g.
        when a job ended and the loop has work besides the bus. Thread-safe, never raises; a
        no-op where the adapter cannot (Kafka: the poll's own timeout bounds the wait)."""
        return None

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Bus(abc.ABC):
    """Factory for producers and consumers on one bus (a Kafka cluster or a local log file)."""

    @abc.abstractmethod
    def producer(
        self, *, max_message_bytes: int | None = None, delivery_timeout_s: float | None = None
    ) -> Producer:
        """A producer; `max_message_bytes` raises its own size limit to what a topic takes,
        `delivery_timeout_s` bounds how long it tries to deliver a message before reporting it
        failed (the bus's default otherwise)."""

    @abc.abstractmethod
    def consumer(self, group_id: str, topics: Sequence[str], *, instance_id: str | None = None) -> Consumer:
        """A consumer in `group_id`; `instance_id` makes it a static member of the group (a
        restarted member with the same id gets its partitions back at once; two live members
        must never share one)."""

    def max_message_bytes(self, topic: str) -> int | None:
        """The largest message `topic` takes, None when the bus sets no limit. Raises BusError."""
        return None

    @abc.abstractmethod
    def read_tail(self, topic: str, last: int) -> list[Message]:
        """The last `last` messages of each partition of `topic` (as it ends now), in no group:
        to look for what a crash may have left written. Raises BusError when it cannot tell."""

    @abc.abstractmethod
    def ensure_topics(self, topics: Sequence[TopicSpec]) -> None:
        """Create the topics that do not exist yet; existing ones are left alone."""
