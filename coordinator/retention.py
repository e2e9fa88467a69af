"""The pruner: passes over the state store that delete old history in bounded slices.

    coordinator.every_turn.append(pruner.tick)       # service.py wires it (`attach`)
    Pruner(store, spec, settings).run_pass()         # `coord prune`: one whole pass now

A pass walks the runs (deleting superseded finished runs older than COORD_RETENTION_RUNS_DAYS,
trimming attempts older than COORD_RETENTION_ATTEMPTS_DAYS, and marking what the kept runs read
and made), then the events (deleting those older than COORD_RETENTION_EVENTS_DAYS that are not
current versions and not marked); what is kept and why is in coordinator/store/retention.py.

In the loop, one slice at most a turn, each its own short transaction: its row count adapts so
a slice takes about COORD_RETENTION_SLICE_S (halved when one took longer, doubled when one took
under half), and after a slice the pruner rests three times as long as it took, so pruning
takes at most a quarter of the loop's time and never one long lock. A pass starts every
COORD_RETENTION_EVERY_S (the first one that long after start-up: a restart is not slowed).
A store error ends the pass with a warning; the next one starts at its time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from coordinator.errors import StoreError
from coordinator.outcome import output_event_id
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec
from coordinator.store.store import StateStore

log = logging.getLogger("coordinator.retention")

DAY_S = 86_400.0
MIN_ROWS, START_ROWS, MAX_ROWS = 20, 50, 20_000
PASS_SLICE_S = 0.5  # a slice's budget in a whole pass outside the loop (`coord prune`)
REST_FACTOR = 3.0  # rest after a slice this many times as long as it took


@dataclass
class PassStats:
    runs: int = 0
    attempts: int = 0
    events: int = 0
    examined: int = 0
    slices: int = 0
    longest_slice_s: float = 0.0
    seconds: float = 0.0


class Pruner:
    """Retention passes over one store, for one spec (whose jobs' outputs name what a run made)."""

    def __init__(
        self,
        store: StateStore,
        spec: PipelineSpec,
        settings: Settings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.spec, self.settings, self.monotonic = store, spec, settings, monotonic
        self.rows = START_ROWS
        self.phase = "rest"
        self.next_pass: float | None = None
        self.last: PassStats | None = None  # the last finished pass
        self._resume_at = 0.0
        self._stats = PassStats()

    # ------------------------------------------------------------------ the loop's hook
    def tick(self, now: float) -> None:
        """At most one slice, when a pass is due and the last slice's rest is over."""
        every = self.settings.retention_every_s
        if not every:
            return
        if self.phase == "rest":
            if self.next_pass is None:
                self.next_pass = now + every
            if now < self.next_pass:
                return
            self._begin(now)
        if self.monotonic() < self._resume_at:
            return
        started = self.monotonic()
        try:
            self._slice()
        except StoreError as exc:
            log.warning("retention: pass stopped (%s); the next starts in %.0f s", exc, every)
            self._end(now)
            return
        took = self.monotonic() - started
        self._adapt(took)
        self._resume_at = self.monotonic() + took * REST_FACTOR
        if self.phase == "rest":
            self.next_pass = now + every

    # ------------------------------------------------------------------ a whole pass
    def run_pass(self, now: float | None = None, slice_s: float = PASS_SLICE_S) -> PassStats:
        """One whole pass now, slice after slice of about `slice_s` each (`coord prune`: no loop
        waits on it, but each slice is still a short transaction of its own); its counts."""
        self._begin(time.time() if now is None else now)
        while self.phase != "rest":
            started = self.monotonic()
            self._slice()
            self._adapt(self.monotonic() - started, slice_s)
        assert self.last is not None
        return self.last

    # ------------------------------------------------------------------ slices
    def _begin(self, now: float) -> None:
        s = self.settings
        self.phase, self._cursor, self._keep = "runs", "", set()
        self._stats, self._began = PassStats(), self.monotonic()
        self._now = now
        self._runs_before = now - s.retention_runs_days * DAY_S
        self._attempts_before = now - s.retention_attempts_days * DAY_S
        self._events_before = now - s.retention_events_days * DAY_S

    def _slice(self) -> None:
        started = self.monotonic()
        stats = self._stats
        with self.store.begin() as tx:
            if self.phase == "runs":
                done = tx.prune_runs_slice(
                    self._cursor, self.rows, self._runs_before, self._attempts_before, self.outputs
                )
                stats.runs += done.runs
                stats.attempts += done.attempts
                self._keep |= done.keep
            else:
                done = tx.prune_events_slice(
                    self._cursor, self.rows, self._events_before, self._now, self._keep
                )
                stats.events += done.events
        stats.examined += done.examined
        stats.slices += 1
        stats.longest_slice_s = max(stats.longest_slice_s, self.monotonic() - started)
        if done.last is not None:
            self._cursor = done.last
        elif self.phase == "runs":
            self.phase, self._cursor = "events", ""
        else:
            self._end(self._now)

    def _end(self, now: float) -> None:
        self._stats.seconds = self.monotonic() - self._began
        self.last, self.phase, self._keep = self._stats, "rest", set()
        self.next_pass = now + self.settings.retention_every_s
        s = self.last
        if s.runs or s.events or s.attempts:
            log.info(
                "retention: deleted %d runs, %d attempts, %d events in %d slices (%.1f s)",
                s.runs,
                s.attempts,
                s.events,
                s.slices,
                s.seconds,
            )

    def _adapt(self, took: float, budget: float | None = None) -> None:
        budget = budget or self.settings.retention_slice_s
        if took > budget:
            self.rows = max(MIN_ROWS, self.rows // 2)
        elif took < budget / 2:
            self.rows = min(MAX_ROWS, self.rows * 2)

    def outputs(self, run_id: str, job: str, attempt: int) -> Iterable[tuple[str, str]]:
        """The (dataset, event id) of each event the run's attempt produced or would have
        (output event ids are derived from the run: coordinator/outcome.py)."""
        spec_job = self.spec.jobs.get(job)
        if spec_job is None:
            return ()
        return [
            (dataset, output_event_id(run_id, attempt, dataset, status))
            for dataset in spec_job.outputs
            for status in ("succeeded", "failed")
        ]


def attach(coordinator) -> Pruner:  # a Coordinator (not imported: the engine imports much)
    """A pruner run from the coordinator's periodic hook."""
    pruner = Pruner(coordinator.store, coordinator.spec, coordinator.settings)
    coordinator.every_turn.append(pruner.tick)
    return pruner
