"""The engine's high-availability room: its lease, adoption and the run watchdog, in the loop.

    ha = Availability(coordinator)     # built by the engine
    ha.begin()                         # at the first run(): the lease (coordinator.owner := its id)
    ha.hold(tx)                        # first in each write transaction: the fence (LeaseLost)
    ha.tick(now)                       # every turn (cheap; the work is done every few seconds)
    ha.may_launch() / ha.may_publish() # a worker before a launch, the outbox before publishing
    ha.end()                           # on close: release the lease; the runs left running

`tick` raises LeaseLost once the lease is gone (the loop ends with it); every `lease_renew_s`
it adopts what is adoptable (adoption.py) and every second it runs the watchdog
(watchdog.py) over this instance's own active runs. What either finds becomes work for the
loop's own machinery: a re-attach or a launch goes to the workers, a lost or overdue attempt
becomes a worker report `Done(run, failed result)` that the next turn records under the
job's retry policy — so one path, the turn's, writes every outcome.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from coordinator import adoption
from coordinator.adoption import Lost, Reattach
from coordinator.launchers.base import RunResult
from coordinator.lease import LeaseKeeper
from coordinator.store import RunRow, Tx
from coordinator.store import leases as L
from coordinator.watchdog import Watchdog, timeout_error

if TYPE_CHECKING:
    from coordinator.engine import Coordinator

log = logging.getLogger("coordinator.availability")


class Availability:
    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.keeper = LeaseKeeper(coord.store, coord.settings, name=coord.owner)
        self.watchdog = Watchdog({n: j.timeout_s for n, j in coord.spec.jobs.items()}, coord.clock)
        self.adoption = adoption.Adoption(
            coord.store,
            lambda: self.keeper.id,
            self.keeper.host,
            self._launcher,
            coord._workdir,
            coord.clock,
            self.hold,
            coord.settings.lease_renew_s,
        )
        self.draining = False  # stopping: runs in flight may end, nothing new starts
        self.left_running: int | None = None  # set by end()
        self._relay_wanted = False  # an adopted lease may have left events unsent in the outbox
        self._begun = False
        self._unfenced = False  # bench/leases.py's comparison only (see unfenced_for_benchmark)
        coord.outbox.others = self._peers_events  # the relay leaves a live peer's events to it

    @property
    def lease(self) -> str | None:
        return self.keeper.lease.lease_id if self.keeper.lease else None

    def _launcher(self, run: RunRow):
        job = self.coord.spec.jobs.get(run.job)
        return None if job is None else self.coord.launcher(job.kind)

    # ------------------------------------------------------------------ lifecycle
    def begin(self) -> str:
        """Take this process's lease and start renewing it; the lease id (the runs' owner)."""
        if not self._begun:
            self.keeper.acquire()
            self.keeper.start()
            self._begun = True
        return self.keeper.id

    def end(self) -> int | None:
        """Release the lease (on close); how many runs it leaves running (None: not released —
        lost, or never taken)."""
        if not self._begun:
            return None
        self._begun = False
        self.left_running = self.keeper.release()
        return self.left_running

    def farewell(self) -> str:
        """What a stop left behind, for the operator (after `end`)."""
        lease, lost = self.lease, self.keeper.lost
        if lost is not None:
            return str(lost)
        if lease is None:
            return "stopped"
        if self.left_running is None:
            return (
                f"stopped; lease {lease} was not released: it expires in {self.keeper.ttl_s:g} s, "
                "then a live instance adopts its runs"
            )
        if not self.left_running:
            return f"stopped; lease {lease} released, no run left running"
        return (
            f"stopped; {self.left_running} run(s) left running under lease {lease}, now released: "
            "a live instance (or this one started again) adopts them at once and re-attaches to "
            "their jobs"
        )

    # ------------------------------------------------------------------ fencing
    def hold(self, tx: Tx) -> None:
        if not self._unfenced:
            self.keeper.hold(tx)

    def _peers_events(self, tx: Tx, events) -> set[str]:
        if not self._begun:
            return set()
        return L.peers_events(tx, self.keeper.id, events, self.coord.clock())

    def unfenced_for_benchmark(self) -> None:
        """Turn the loop's lease work off — the fence in each write transaction, the adoption
        look and the watchdog — so that bench/leases.py can measure, in one run, what they cost.
        A benchmark's knob, not a way to serve: an unfenced instance may write for runs another
        has adopted. No setting or command reaches it."""
        self._unfenced = True

    def may_launch(self) -> bool:
        """A worker asks before it launches: waits while the lease is stale but not lost."""
        return not self._begun or self.keeper.wait_fresh(self.keeper.ttl_s)

    def may_publish(self) -> bool:
        return not self._begun or self.keeper.fresh()

    # ------------------------------------------------------------------ periodic work
    def tick(self, now: float) -> None:
        if not self._begun or self._unfenced:
            return
        if self.keeper.lost is not None:
            raise self.keeper.lost
        if self.adoption.due(now):
            self._act(self.adoption.look(), adopted=True)
        if self.watchdog.due(now):
            self._watch(now)
        if self._relay_wanted and self.coord.outbox.settled:  # not while our own are in flight
            self._relay_wanted, self.coord.outbox.dirty = False, True

    def _act(self, actions: list[adoption.Action], adopted: bool) -> None:
        if not actions:
            return
        if adopted:
            self._relay_wanted = True  # what the dead instance committed but did not publish
        found = [
            (a.run.run_id, a.run.attempt, a.handle) for a in actions if isinstance(a, Reattach) and a.found
        ]
        if found:
            with self.coord.store.begin() as tx:
                self.hold(tx)
                tx.set_running_many(found, self.coord.clock())
        for action in actions:
            if isinstance(action, Lost):
                self.coord.workers.report(
                    action.run, RunResult(False, error=action.reason, details={"lost": True})
                )
            else:
                self.coord.workers.start(action.run, action.handle)

    def _watch(self, now: float) -> None:
        with self.coord.store.begin() as tx:
            seen = self.watchdog.look(tx, self.keeper.id, self.coord.workers.inflight, now)
        for run, timeout in seen.overdue:
            log.warning(
                "run %s %s[%s]: past its timeout of %g s; stopping it",
                run.run_id,
                run.job,
                run.partition,
                timeout,
            )
            launcher = self._launcher(run)
            if launcher is not None and run.handle is not None:
                threading.Thread(target=launcher.cancel, args=(run.handle,), daemon=True).start()
            result = RunResult(False, error=timeout_error(timeout), details={"timed_out": True})
            self.coord.workers.report(run, result)
        if seen.orphans and not self.draining:
            lease = self.keeper.lease
            assert lease is not None
            actions = []
            for run in seen.orphans:
                launcher = self._launcher(run)
                if launcher is None:
                    continue
                from coordinator.recovery import find_process

                what = "nothing in this instance was waiting on it"
                workdir = self.coord._workdir(run)
                actions.append(
                    adoption.decide(run, lease.host, lease.host, launcher, workdir, find_process, what)
                )
            log.warning(
                "watchdog: %d run(s) of this instance had nobody waiting on them; re-attaching", len(actions)
            )
            self._act(actions, adopted=False)
