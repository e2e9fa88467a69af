"""A wake-up for a consumer that has none of its own (Kafka's): a thread of its own polls it.

The engine's loop waits on the bus while jobs run, and a job's end must end that wait at once
(its downstream job starts on it). confluent-kafka's poll cannot be interrupted, so the loop
waited out its busy poll (5 ms) after every job's end. Nor can the poll simply run in a thread
while the loop commits from its own: confluent-kafka lets one thread at a time into a consumer —
a call from a second thread waits for the poll in progress and can starve behind a poll loop
(measured with confluent-kafka 2.16). So `PolledConsumer` owns the consumer on one thread:

- that thread polls in short slices (`slice_s`) and appends what it gets to a buffer, up to
  `max_buffered` messages (then it waits for the loop to take some);
- the loop's `poll` takes from the buffer, waiting for a message, its timeout or a `wakeup`
  (any thread), whichever comes first;
- every other call (commit, lag, caught_up, close) is handed to that thread and run between
  two slices, so the consumer only ever sees one thread.

Delivery is unchanged: messages are handed over in the order the consumer gave them, offsets
move only by `commit` of what the loop handed on (state before offsets, as before), and what
is still buffered when the consumer closes was never committed and comes back to the group. A
poll error is raised by the loop's poll once the messages taken before it are handed over; a
background commit's error by the next `commit`.

`WokenBus(bus)` gives such consumers (only where the adapter's own `wakeup` is the no-op of the
interface) and passes everything else on to `bus`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from coordinator.bus.base import Bus, Consumer, Message, Producer, TopicSpec
from coordinator.errors import BusError

log = logging.getLogger("coordinator.bus")
T = TypeVar("T")


class PolledConsumer(Consumer):
    """`inner`, polled by a thread of its own (started by the first `poll`); see the module."""

    def __init__(self, inner: Consumer, *, slice_s: float = 0.01, max_buffered: int = 10_000) -> None:
        self._inner = inner
        self._slice_s, self._max = slice_s, max_buffered
        self._cond = threading.Condition()
        self._buffer: collections.deque[Message] = collections.deque()
        self._calls: collections.deque[tuple[Callable[[Consumer], Any], Future[Any]]] = collections.deque()
        self._error: BusError | None = None  # the thread's poll failed: raised by the loop's poll
        self._commit_error: BusError | None = None  # a background commit failed: by the next commit
        self._want = 500
        self._woken = self._closing = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the polling thread
    def _run(self) -> None:
        inner, cond = self._inner, self._cond
        while True:
            with cond:
                calls = list(self._calls)
                self._calls.clear()
                closing = self._closing
                full = len(self._buffer) >= self._max or self._error is not None
            for fn, future in calls:
                try:
                    future.set_result(fn(inner))
                except BaseException as exc:  # handed to the caller, who raises it
                    future.set_exception(exc)
            if closing:
                return
            if full:  # the loop takes from the buffer (or the error) first; calls still run
                with cond:
                    if not self._calls and not self._closing:
                        cond.wait(self._slice_s)
                continue
            try:
                got = inner.poll(self._want, self._slice_s)
            except BusError as exc:
                with cond:
                    self._error = exc
                    cond.notify_all()
                continue
            except Exception as exc:  # an adapter's bug must reach the loop, not end this thread
                with cond:
                    self._error = BusError(f"consume failed: {exc!r}", retriable=False)
                    cond.notify_all()
                continue
            if got:
                with cond:
                    self._buffer.extend(got)
                    cond.notify_all()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _submit(self, fn: Callable[[Consumer], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._cond:
            if self._alive() and not self._closing:
                self._calls.append((fn, future))
                self._cond.notify_all()
                return future
        try:  # no thread (never polled, or closed): nothing else uses the consumer
            future.set_result(fn(self._inner))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def _call(self, fn: Callable[[Consumer], T]) -> T:
        return self._submit(fn).result()

    # ------------------------------------------------------------------ the Consumer interface
    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Message]:
        cond = self._cond
        with cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="coord-bus-poll", daemon=True)
                self._thread.start()
            self._want = max_messages
            deadline = time.monotonic() + timeout
            while not self._buffer and self._error is None and not self._woken:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                cond.wait(left)
            self._woken = False
            if not self._buffer and self._error is not None:
                error, self._error = self._error, None
                cond.notify_all()
                raise error
            was_full = len(self._buffer) >= self._max
            out = [self._buffer.popleft() for _ in range(min(max_messages, len(self._buffer)))]
            if was_full:
                cond.notify_all()
        return out

    def wakeup(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def commit(self, messages: Sequence[Message], wait: bool = True) -> None:
        if self._commit_error is not None:
            error, self._commit_error = self._commit_error, None
            raise error
        future = self._submit(lambda consumer: consumer.commit(messages, wait=wait))
        if wait:
            future.result()
            return
        future.add_done_callback(self._committed)

    def _committed(self, future: Future[None]) -> None:
        error = future.exception()
        if isinstance(error, BusError):
            self._commit_error = error
        elif error is not None:
            log.error("bus: committing offsets failed: %r", error)

    def lag(self) -> int | None:
        lag = self._call(lambda consumer: consumer.lag())
        return None if lag is None else lag + len(self._buffer)

    def caught_up(self) -> bool:
        # run between two polls: whatever the consumer has read is in the buffer by then
        return self._call(lambda consumer: not self._buffer and consumer.caught_up())

    def assigned(self) -> bool:
        return self._call(lambda consumer: consumer.assigned())

    def close(self) -> None:
        """Stop the thread, then close the consumer (on that thread while it runs); what is still
        buffered was never committed and is delivered to the group again."""
        future = self._submit(lambda consumer: consumer.close())
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        future.result()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            self._buffer.clear()
            self._thread, self._closing, self._error = None, False, None


class WokenBus(Bus):
    """`bus`, whose consumers wake: a `PolledConsumer` where the adapter has no wakeup of its own."""

    def __init__(self, bus: Bus) -> None:
        self.inner = bus

    def consumer(self, group_id: str, topics: Sequence[str], *, instance_id: str | None = None) -> Consumer:
        consumer = self.inner.consumer(group_id, topics, instance_id=instance_id)
        if type(consumer).wakeup is Consumer.wakeup:
            return PolledConsumer(consumer)
        return consumer

    def producer(
        self, *, max_message_bytes: int | None = None, delivery_timeout_s: float | None = None
    ) -> Producer:
        return self.inner.producer(max_message_bytes=max_message_bytes, delivery_timeout_s=delivery_timeout_s)

    def max_message_bytes(self, topic: str) -> int | None:
        return self.inner.max_message_bytes(topic)

    def read_tail(self, topic: str, last: int) -> list[Message]:
        return self.inner.read_tail(topic, last)

    def ensure_topics(self, topics: Sequence[TopicSpec], *args: Any, **kwargs: Any) -> None:
        self.inner.ensure_topics(topics, *args, **kwargs)
