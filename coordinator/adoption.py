"""Adoption: a live instance takes over the runs of a dead (or released) lease.

Every few seconds the loop asks `Adoption.look()`, which in one transaction takes over every
lease that expired or was released with runs left (store/leases.py: exactly one adopter wins)
and says, for each run that came with it, what to do — `Reattach` or `Lost`:

- a stored handle that is reachable from here (a process on this host — the dead instance's
  host is in its lease —, or a standalone cluster-mode Spark driver, which its master answers
  for): its job still runs, or it ended and left its exit code → re-attach, wait, record;
- a handle whose process is gone without an exit code (killed with its instance, as when a host
  dies), or one that cannot be reached from here → the attempt is lost: it ends failed with a
  reason naming the dead lease, and the job's retry policy decides (a new attempt number);
- no handle yet (the instance died between claiming the run and storing its handle): on this
  host the run's folder tells whether its process started (recovery.find_process) → re-attach,
  or never did → launch it in the same attempt; elsewhere → lost.

Runs adopted keep their first start (`started_at`), so their timeout counts from there; the
pool slots they hold are the adopter's from then on, and come back as they end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coordinator.handles import Handle
from coordinator.launchers.base import Launcher
from coordinator.store import RunRow, StateStore
from coordinator.store import leases as L

log = logging.getLogger("coordinator.adoption")


@dataclass(frozen=True)
class Reattach:
    """Wait on `handle` (None: the job never started; launch it in the same attempt)."""

    run: RunRow
    handle: Handle | None
    found: bool = False  # the handle was found now (not stored yet): store it first


@dataclass(frozen=True)
class Lost:
    """The attempt cannot be followed from here: fail it with `reason`, under the retry policy."""

    run: RunRow
    reason: str


Action = Reattach | Lost


def reachable(handle: Handle, dead_host: str, my_host: str) -> bool:
    """Whether a stored handle can be followed from this host."""
    return dead_host == my_host or bool(handle.data.get("rest"))  # Spark standalone cluster mode


def exited(handle: Handle) -> bool:
    """The process behind the handle left its exit code in its run folder (its spawner writes
    it a moment after the end: launchers/spawner.py)."""
    from coordinator.recovery import left_no_result

    return bool(handle.data.get("workdir")) and not left_no_result(handle)


def decide(
    run: RunRow,
    owner_host: str,
    my_host: str,
    launcher: Launcher,
    workdir: Path,
    find: Callable[[str, Path], Handle | None],
    what: str,
) -> Action:
    """What to do with one adopted run (see the module docstring); `what` happened to the
    instance that ran it, for the reason of a lost attempt."""
    handle = run.handle
    if handle is not None:
        if not reachable(handle, owner_host, my_host):
            return Lost(run, f"lost: {what}, and its job cannot be followed from {my_host}")
        if launcher.is_alive(handle) or exited(handle):
            return Reattach(run, handle)
        return Lost(run, f"lost: {what}, and its job ended without an exit code (killed with it)")
    if owner_host != my_host:
        return Lost(run, f"lost: {what} before it recorded the job's handle")
    found = find(launcher.kind, workdir)
    return Reattach(run, found, found=found is not None)


class Adoption:
    """The periodic look for dead leases, for the loop (see the module docstring)."""

    def __init__(
        self,
        store: StateStore,
        me: Callable[[], str],
        host: str,
        launcher: Callable[[RunRow], Launcher | None],
        workdir: Callable[[RunRow], Path],
        clock: Callable[[], float],
        fence: Callable[[object], None],
        interval_s: float,
    ) -> None:
        self.store, self.me, self.host = store, me, host
        self._launcher, self._workdir, self.clock, self._fence = launcher, workdir, clock, fence
        self.interval_s = interval_s
        self._due = 0.0  # at once at start-up: a predecessor's runs
        self.adopted: list[tuple[str, float, int]] = []  # (lease, when, runs): for logs and tests

    def due(self, now: float) -> bool:
        return now >= self._due

    def look(self) -> list[Action]:
        """Adopt what is adoptable now; the actions for its runs (none most of the time)."""
        from coordinator.recovery import find_process

        now = self.clock()
        self._due = now + self.interval_s
        with self.store.begin() as tx:
            self._fence(tx)
            taken = L.adopt(tx, self.me(), now)
        actions: list[Action] = []
        for got in taken:
            self.adopted.append((got.lease.lease_id, now, len(got.runs)))
            log.warning(
                "adopted lease %s (%s on %s, %s %.1f s ago) with %d active run(s)",
                got.lease.lease_id,
                got.lease.status(now),
                got.lease.host,
                "expired" if got.lease.state == "live" else "released",
                now - got.lease.expires_at,
                len(got.runs),
            )
            for run in got.runs:
                launcher = self._launcher(run)
                if launcher is None:
                    actions.append(
                        Lost(
                            run, f"lost: adopted from {got.lease.lease_id}; its job is no longer in the spec"
                        )
                    )
                    continue
                what = f"its instance {got.lease.lease_id} on {got.lease.host} stopped renewing its lease"
                action = decide(
                    run, got.lease.host, self.host, launcher, self._workdir(run), find_process, what
                )
                log.info(
                    "run %s %s[%s] adopted from %s: %s",
                    run.run_id,
                    run.job,
                    run.partition,
                    got.lease.lease_id,
                    "lost" if isinstance(action, Lost) else "re-attached" if action.handle else "re-launched",
                )
                actions.append(action)
        return actions
