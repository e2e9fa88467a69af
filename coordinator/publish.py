"""Putting completion events on the bus: the `Publisher`, and the one-call SDK `publish(...)`.

Every producer path (CLI, SDK, HTTP, webhooks, dbt artifacts) goes through `Publisher`: the
event is encoded with the current schema version and keyed by dataset name, so one dataset's
events stay in order on the bus; its id rides in a header too, readable without decoding.

From a producer's own code (a Spark job's driver, a script)::

    from coordinator import publish
    publish("dbt.reporting.user_features", "2024-06-01", row_count=1234)

`coordinator.publish` is this module made callable, so both the module (`Publisher`) and the
function are reachable under one name.
"""

from __future__ import annotations

import functools
import sys
import threading
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from coordinator.bus.base import Bus, Producer
from coordinator.codec import Codec, codec_for, event_from_json
from coordinator.errors import EventError
from coordinator.events import EVENT_ID_HEADER, Column, CompletionEvent, Status

if TYPE_CHECKING:
    from coordinator.settings import Settings


class Publisher:
    """Encodes and produces events to settings.topic_events; the producer is made on first use.
    `publish` queues (batched by the bus), `flush` waits until all is durable; a context manager."""

    def __init__(self, bus: Bus, settings: Settings, *, codec: Codec | None = None) -> None:
        self.bus, self.settings = bus, settings
        self.topic = settings.topic_events
        self.codec = codec or codec_for(settings)
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            with self._lock:  # the HTTP side publishes from several threads
                if self._producer is None:
                    self._producer = self.bus.producer()
        return self._producer

    def publish(self, event: CompletionEvent) -> None:
        """Queue one event. Raises EventError when it cannot be encoded, BusError when the bus fails."""
        self.producer.produce(
            self.topic,
            self.codec.encode(event),
            key=event.dataset.encode(),
            headers=((EVENT_ID_HEADER, event.event_id.encode()),),
        )

    def publish_many(
        self,
        events: Iterable[CompletionEvent],
        on_delivery: Callable[[CompletionEvent, str | None], None] | None = None,
    ) -> int:
        """Queue every event (all are encoded first, so a bad one queues none); how many.
        `on_delivery(event, error)` is called from a later `poll` or `flush` once the bus has
        the event (error None) or has refused it."""
        encode = self.codec.encode
        encoded = [(e, encode(e), e.dataset.encode()) for e in events]
        producer, topic = self.producer, self.topic
        for event, value, key in encoded:
            callback = None if on_delivery is None else functools.partial(on_delivery, event)
            headers = ((EVENT_ID_HEADER, event.event_id.encode()),)
            producer.produce(topic, value, key=key, headers=headers, on_delivery=callback)
        return len(encoded)

    def poll(self) -> None:
        """Serve delivery callbacks for what the bus has confirmed, without waiting."""
        if self._producer is not None:
            self._producer.poll()

    def flush(self, timeout: float = 30.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close()
            finally:
                self._producer = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventFields(TypedDict, total=False):
    """`build_event`'s keywords, which `publish` passes on as they are."""

    status: str | Status
    row_count: int | None
    location: str | None
    columns: Sequence[Column | Mapping[str, Any]] | None
    attributes: Mapping[str, str] | None
    producer: str
    producer_run_id: str | None
    error: str | None
    event_id: str | None


def build_event(
    dataset: str,
    partition: str | None = None,
    *,
    status: str | Status = Status.SUCCEEDED,
    row_count: int | None = None,
    location: str | None = None,
    columns: Sequence[Column | Mapping[str, Any]] | None = None,
    attributes: Mapping[str, str] | None = None,
    producer: str = "sdk",
    producer_run_id: str | None = None,
    error: str | None = None,
    event_id: str | None = None,
) -> CompletionEvent:
    """A validated completion event from plain arguments; EventError (with reason) when invalid."""
    fields: dict[str, Any] = {
        "dataset": dataset,
        "partition": partition,
        "status": status,
        "row_count": row_count,
        "location": location,
        "producer": producer,
        "producer_run_id": producer_run_id,
        "error": error,
        "attributes": dict(attributes or {}),
        "columns": None
        if columns is None
        else [c.model_dump() if isinstance(c, Column) else dict(c) for c in columns],
    }
    if event_id is not None:
        fields["event_id"] = event_id
    return event_from_json(fields)


def publish(
    dataset: str,
    partition: str | None = None,
    *,
    settings: Settings | None = None,
    **fields: Unpack[EventFields],
) -> CompletionEvent:
    """Publish "dataset (partition) is complete" (or failed) and wait until it is on the bus.

    `fields` are `build_event`'s keywords (status, row_count, location, columns, attributes,
    producer, producer_run_id, error, event_id). Settings come from the environment (COORD_*)
    unless given. Returns the event published. Raises EventError for an invalid event,
    BusError when the bus cannot take it. Each call opens and closes a producer: to publish
    many events, use one `Publisher`.
    """
    from coordinator.bus.factory import open_bus
    from coordinator.settings import Settings

    event = build_event(dataset, partition, **fields)
    settings = settings or Settings()
    with Publisher(open_bus(settings), settings) as publisher:
        publisher.publish(event)
        publisher.flush()
    return event


class _CallableModule(types.ModuleType):
    """Lets `coordinator.publish(...)` call the SDK function while staying this module."""

    def __call__(self, *args: Any, **kwargs: Any) -> CompletionEvent:
        return publish(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["EventError", "Publisher", "build_event", "publish"]
