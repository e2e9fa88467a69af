"""What one loop turn carries from step to step, and when the loop looks for runs to claim.

Each step of a turn (record events, claim runs, write the workers' results) works inside the
turn's transaction and returns a `Step`: the outbox events it queued and the runs it claimed —
both acted on only once that transaction has committed — and what it counted. The turn adds
the steps up and the loop adds each turn's counts to the `RunStats` it returns; nothing is
handed over through fields filled as a side effect.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coordinator.errors import BusError
    from coordinator.events import CompletionEvent
    from coordinator.store.store import RunRow

log = logging.getLogger("coordinator.engine")
CLAIM_POLL_S = 0.5


@dataclass(slots=True)
class RunStats:
    """What one `Coordinator.run` call (or one turn of it) did."""

    events: int = 0
    dead_lettered: int = 0
    runs_created: int = 0
    launched: int = 0
    succeeded: int = 0
    failed: int = 0
    blocked: int = 0
    retried: int = 0
    published: int = 0

    def add(self, other: RunStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(slots=True)
class Step:
    """What a step decided inside a transaction, to be done once it commits."""

    publish: list[CompletionEvent] = field(default_factory=list)  # queued in the outbox: to the bus
    start: list[RunRow] = field(default_factory=list)  # claimed (state `starting`): to the workers
    stats: RunStats = field(default_factory=RunStats)
    # ids of `publish` the step wrote into the outbox itself (early: the write then travels with
    # the transaction's next statement, store/deferred.py); the engine's `_transact` writes the rest
    outboxed: set[str] = field(default_factory=set)

    def __add__(self, other: Step) -> Step:
        stats = RunStats()
        stats.add(self.stats)
        stats.add(other.stats)
        outboxed = self.outboxed | other.outboxed
        return Step(self.publish + other.publish, self.start + other.start, stats, outboxed)


class ClaimSchedule:
    """When a turn looks for due ready runs. A claim is a statement per pool, so it is skipped
    while nothing can have changed: it is due at once when ready runs may have appeared
    (created while their pool was full) or a pool slot was freed while ready runs may wait, and
    when a retry this loop scheduled comes due; runs queued by other processes (`coord retry`,
    another instance whose full pool this one frees) are caught by a look every CLAIM_POLL_S."""

    __slots__ = ("due_at", "ready_waiting", "_retries")

    def __init__(self) -> None:
        self.due_at = 0.0  # when to look again (0: at once)
        self.ready_waiting = True  # due ready runs may be waiting (not known at start-up)
        self._retries: list[float] = []  # when the retries this loop scheduled come due (a heap)

    def due(self, now: float) -> bool:
        return now >= self.due_at

    def looked(self, now: float, found: bool, contended: bool) -> None:
        """A claim ran. `contended`: another instance was claiming from a pool (look again next
        turn); a claim that found nothing means none is due until one is created or a
        scheduled retry comes due."""
        self.due_at = 0.0 if contended else now + CLAIM_POLL_S
        self.ready_waiting = found or contended
        retries = self._retries
        while retries and retries[0] <= now:
            heapq.heappop(retries)
        if retries:
            self.due_at = min(self.due_at, retries[0])
            self.ready_waiting = True

    def ready_created(self) -> None:
        """A run was created ready: its pool had no room."""
        self.due_at, self.ready_waiting = 0.0, True

    def retry_scheduled(self, at: float) -> None:
        self.ready_waiting = True
        self.due_at = min(self.due_at, at)
        heapq.heappush(self._retries, at)

    def slots_freed(self) -> None:
        """Runs ended: their slots are worth a claim only while ready runs may wait."""
        if self.ready_waiting:
            self.due_at = 0.0


def unless_fatal(exc: BusError, then: str) -> None:
    """A bus error met by the loop: logged with what happens `then` when trying again may help
    (what was not committed or confirmed comes back later); raised — ending the loop with its
    message — when it will fail the same way each time (bad configuration, authentication, a
    fatal producer)."""
    if not exc.retriable:
        log.error("bus: %s; this does not heal by retrying, the coordinator stops", exc)
        raise exc
    log.warning("bus: %s; %s", exc, then)
