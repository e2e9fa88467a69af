"""Hooks around the engine loop: metrics, alerts and logging without flags inside the loop.

A hook subclasses `Hook` and overrides the no-op methods it cares about. The engine calls them
through `Hooks.emit`, which logs a broken hook and carries on: observing the coordinator must
never stop it. Retry policy itself is data (the job's `retries:`), applied by the engine; hooks
see its decisions (`after_retry_scheduled`, `after_failed`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.events import CompletionEvent
    from coordinator.launchers.base import Handle, RunResult
    from coordinator.store.deadletters import DeadLetterRow
    from coordinator.store.store import RunRow

log = logging.getLogger("coordinator.hooks")


class Hook:
    """Every method is a documented no-op; override what you need. Called from engine threads."""

    def after_ingest(self, events: Sequence[CompletionEvent], created: Sequence[RunRow]) -> None:
        """A batch of new (deduplicated) events was recorded and `created` runs were made."""

    def before_launch(self, run: RunRow) -> None:
        """A claimed run is about to start (attempt `run.attempt`)."""

    def after_launch(self, run: RunRow, handle: Handle) -> None:
        """The launcher started the run (or re-attached to it after a restart)."""

    def after_finish(self, run: RunRow, result: RunResult) -> None:
        """An attempt ended, succeeded or not."""

    def after_retry_scheduled(self, run: RunRow, delay_s: float, error: str | None) -> None:
        """An attempt failed and another is due in `delay_s` seconds."""

    def after_failed(self, run: RunRow, error: str | None) -> None:
        """A run used its last attempt and failed; its downstream is held."""

    def after_blocked(self, run: RunRow, reason: str) -> None:
        """A run was blocked (contract violation); nothing was launched."""

    def dead_letter_unwritable(self, row: DeadLetterRow) -> None:
        """A refused bus message could not be written to the dead-letter topic within the bound;
        it is kept in the state store's coord_dead_letters instead (coordinator/deadletter.py)."""

    def after_turn(self, messages: int, seconds: float) -> None:
        """A loop turn that did something ended: it took `messages` off the bus and its work
        (bus, state transaction, launches) took `seconds`. Turns that grow longer and batches
        that grow fuller say the coordinator is falling behind its input."""


class Hooks:
    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self.hooks = list(hooks)

    def emit(self, name: str, *args: Any) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, name)(*args)
            except Exception:  # a broken hook is logged, never fatal
                log.exception("hook %s.%s failed", type(hook).__name__, name)


class LoggingHook(Hook):
    """One log line per state change: the coordinator's own journal."""

    def after_launch(self, run: RunRow, handle: Handle) -> None:
        log.info("run %s %s[%s] attempt %d started", run.run_id, run.job, run.partition, run.attempt)

    def after_finish(self, run: RunRow, result: RunResult) -> None:
        log.info(
            "run %s %s[%s] attempt %d %s%s",
            run.run_id,
            run.job,
            run.partition,
            run.attempt,
            "succeeded" if result.succeeded else "failed",
            "" if result.succeeded else f": {result.error}",
        )

    def after_retry_scheduled(self, run: RunRow, delay_s: float, error: str | None) -> None:
        log.warning("run %s %s[%s] retries in %.1f s", run.run_id, run.job, run.partition, delay_s)

    def after_failed(self, run: RunRow, error: str | None) -> None:
        log.error("run %s %s[%s] failed, downstream held: %s", run.run_id, run.job, run.partition, error)

    def after_blocked(self, run: RunRow, reason: str) -> None:
        log.error("run %s %s[%s] blocked: %s", run.run_id, run.job, run.partition, reason)


class MetricsHook(Hook):
    """Counters and launch times, for `coord` views and the benchmarks."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.launched_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def after_ingest(self, events: Sequence[CompletionEvent], created: Sequence[RunRow]) -> None:
        with self._lock:
            self.counts["events"] += len(events)
            self.counts["runs_created"] += len(created)

    def after_launch(self, run: RunRow, handle: Handle) -> None:
        with self._lock:
            self.counts["launched"] += 1
            self.launched_at.setdefault(run.run_id, time.time())

    def after_finish(self, run: RunRow, result: RunResult) -> None:
        with self._lock:
            self.counts["succeeded" if result.succeeded else "attempts_failed"] += 1

    def after_failed(self, run: RunRow, error: str | None) -> None:
        with self._lock:
            self.counts["failed"] += 1

    def after_blocked(self, run: RunRow, reason: str) -> None:
        with self._lock:
            self.counts["blocked"] += 1
