"""The observer loop: dead letters and the clock, for metrics and alerts, beside the engine.

The engine only counts the messages it refuses; the dead-letter topic holds each one with its
reason, so the watcher reads that topic in a consumer group of its own (`<group>.observe`)
and tells its listeners — metrics count by reason, alerts raise an incident. On every tick it
also lets listeners look at the clock (deadline checks, alert re-delivery). A listener that
raises is logged, never fatal, like a hook.

    watcher = Watcher(settings, bus, [metrics, alerts])
    watcher.start(); ...; watcher.stop()          # or watcher.tick() in a test
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from coordinator.bus.base import Bus, Consumer
from coordinator.deadletter import read_dead_letter
from coordinator.errors import BusError, CoordinatorError
from coordinator.settings import Settings

log = logging.getLogger(__name__)


class Watcher:
    """Listeners may define `dead_lettered(record: dict)` and `tick(now: float)`."""

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        listeners: Iterable[Any],
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.bus, self.listeners = settings, bus, list(listeners)
        self.interval_s, self.clock = interval_s, clock
        self.group_id = f"{settings.consumer_group}.observe"
        self._consumer: Consumer | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _emit(self, name: str, *args: Any) -> None:
        for listener in self.listeners:
            method = getattr(listener, name, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception:
                log.exception("watcher listener %s.%s failed", type(listener).__name__, name)

    def tick(self) -> int:
        """Hand over the new dead letters, then the clock; returns how many dead letters."""
        n = 0
        try:
            if self._consumer is None:
                self._consumer = self.bus.consumer(self.group_id, [self.settings.topic_dead_letter])
            while messages := self._consumer.poll(500, 0.05):
                for message in messages:
                    try:
                        record = read_dead_letter(message)
                    except CoordinatorError as exc:
                        log.warning("unreadable dead letter at offset %s: %s", message.offset, exc)
                        continue
                    self._emit("dead_lettered", record)
                    n += 1
                self._consumer.commit(messages)
        except BusError as exc:
            log.warning("watcher: reading dead letters failed: %s", exc)
            self._close_consumer()
        self._emit("tick", self.clock())
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def wake(self) -> None:
        """Tick now rather than at the next interval (e.g. a run just failed)."""
        self._wake.set()

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, name="coord-watcher", daemon=True)
        self._thread.start()
        return self

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except BusError as exc:
                log.warning("watcher: closing the consumer failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self._close_consumer()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
