"""The run watchdog, in the loop: this instance's active runs in the store, against its workers.

A worker thread waits on each run the loop started and enforces its timeout, but the store is
what counts: every `interval_s` the loop asks `Watchdog.look`, which reads the runs this
instance owns that are starting or running and returns

- `overdue`: runs past their job's timeout counted from the attempt's first start (the run's
  `started_at`, kept across a re-attach after a restart and across adoption), by more than a
  grace that leaves the worker's own timeout to act first — to be stopped and failed per policy;
- `orphans`: runs nobody here waits on (not in flight) — to be re-attached (see adoption.py),
  so that a run whose process has ended is finished within seconds whoever started it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from coordinator.store import RunRow, Tx

GRACE_S = 2.0


@dataclass(frozen=True)
class Findings:
    overdue: list[tuple[RunRow, float]]  # (run, its timeout)
    orphans: list[RunRow]


class Watchdog:
    def __init__(
        self, timeouts: Mapping[str, float | None], clock: Callable[[], float], interval_s: float = 1.0
    ):
        self.timeouts, self.clock, self.interval_s = dict(timeouts), clock, interval_s
        self._due = 0.0
        self._stopping: set[tuple[str, int]] = set()  # attempts already being stopped

    def due(self, now: float) -> bool:
        return now >= self._due

    def look(self, tx: Tx, owner: str, inflight: Collection[str], now: float) -> Findings:
        self._due = now + self.interval_s
        overdue, orphans = [], []
        active = tx.active_runs(owner)
        current = {(r.run_id, r.attempt) for r in active}
        self._stopping &= current
        for run in active:
            timeout = self.timeouts.get(run.job)
            started = run.started_at if run.started_at is not None else run.created_at
            if timeout is not None and now - started > timeout + GRACE_S:
                if (run.run_id, run.attempt) not in self._stopping:
                    self._stopping.add((run.run_id, run.attempt))
                    overdue.append((run, timeout))
            elif run.run_id not in inflight:
                orphans.append(run)
        return Findings(overdue, orphans)


def timeout_error(timeout_s: float) -> str:
    return f"timed out after {timeout_s:g} s (counted from its first start) and was stopped"
