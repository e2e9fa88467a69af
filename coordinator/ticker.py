"""The ticker: fires the spec's schedules from the engine's periodic hook (`every_turn`).

    ticker = Ticker(spec.schedules, store, coordinator.record_own)
    coordinator.every_turn.append(ticker.tick)          # service.py wires it

At each turn `tick(now)` looks only at schedules whose next scheduled instant has come
(a comparison per schedule; the cron arithmetic runs when one is due). What is due by the
schedule's catch-up policy (schedules.due) becomes tick events handed to the engine, which
records them in one transaction — readiness, runs, the outbox — like a batch off the bus.

Exactly once: a tick's event id is derived from (schedule, scheduled instant), and the store
records an event id once. Two instances computing the same tick, or an instance restarted
after it recorded one, record it once; only the instance that recorded it runs on it and
publishes it. Where a schedule stands is read from the store when the ticker starts — the
newest tick recorded, by its scheduled instant — so a restart catches up from there (a tick
published by hand does not move it); with no tick recorded it begins at `start`, else
`grace_s` before its first look. A failed transaction raises out of the loop with nothing
recorded and the ticker's place unmoved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from coordinator import schedules as S
from coordinator.events import CompletionEvent

if TYPE_CHECKING:
    from coordinator.engine import Coordinator
    from coordinator.store.store import StateStore

log = logging.getLogger("coordinator.ticker")


class Ticker:
    def __init__(
        self,
        schedules: Mapping[str, S.ScheduleSpec],
        store: StateStore,
        fire: Callable[[Sequence[CompletionEvent]], int],
        may_fire: Callable[[], bool] = lambda: True,
    ) -> None:
        self.schedules, self.store, self.fire, self.may_fire = dict(schedules), store, fire, may_fire
        self._after: dict[str, datetime] = {}  # fired or passed over up to here (inclusive)
        self._next: dict[str, float] = {}  # when the next look at each schedule is worth making
        self.fired = 0  # ticks this ticker recorded (not those another instance did)

    def tick(self, now: float) -> None:
        if not self.schedules or not self.may_fire():  # stopping: what is due stays for the next
            return
        if not self._after:
            self._start(now)
        at = datetime.fromtimestamp(now, UTC)
        events: list[CompletionEvent] = []
        moved: dict[str, datetime] = {}
        for name, spec in self.schedules.items():
            if now < self._next[name]:
                continue
            ticks = S.due(name, spec, self._after[name], at)
            events += [t.event() for t in ticks]
            # all: up to the last fired (a capped catch-up goes on next turn); else up to now
            capped = spec.catch_up == "all" and len(ticks) >= S.MAX_PER_LOOK
            moved[name] = ticks[-1].at if capped else at
        if events:
            new = self.fire(events)
            self.fired += new
            log.info("schedules: %d tick(s) due, %d recorded here", len(events), new)
        for name, after in moved.items():
            self._after[name] = after
            self._next[name] = S.next_after(self.schedules[name], after).timestamp()

    def _start(self, now: float) -> None:
        """Where each schedule stands: its newest recorded tick, else its start, else a grace
        before now."""
        with self.store.begin() as tx:
            last = tx.newest_produced([S.dataset_of(n) for n in self.schedules], S.TICK_ID_PREFIX)
        at = datetime.fromtimestamp(now, UTC)
        for name, spec in self.schedules.items():
            recorded = last.get(S.dataset_of(name))
            if recorded is not None:
                after = datetime.fromtimestamp(recorded, UTC)
            else:
                after = spec.begins() or at - timedelta(seconds=spec.grace_s)
                after -= timedelta(microseconds=1)  # `start` itself is a scheduled time that counts
            self._after[name] = after
            self._next[name] = float("-inf")  # look at once: something may be due


def attach(coordinator: Coordinator) -> Ticker | None:
    """A ticker for the coordinator's spec, run from its periodic hook (None: no schedules)."""
    if not coordinator.spec.schedules:
        return None
    ticker = Ticker(
        coordinator.spec.schedules,
        coordinator.store,
        coordinator.record_own,
        lambda: not coordinator.ha.draining,
    )
    coordinator.every_turn.append(ticker.tick)
    return ticker
