"""This process's lease: taken at start-up, renewed by a small thread, checked by every write.

    keeper = LeaseKeeper(store, settings)
    keeper.acquire()        # a new `name#epoch` row (see store/leases.py); refuses a live twin
    keeper.start()          # renews every `lease_renew_s`, the row's TTL `lease_ttl_s`
    keeper.hold(tx)         # first thing in each write transaction: LeaseLost once adopted
                            # (raised with the transaction's next answer, or before its commit)
    keeper.fresh()          # before a launch or a publish: renewed recently enough by our clock
    keeper.release()        # on a clean stop: how many runs are left running under it

The renewal thread writes only the lease row, so its cost to the loop is one small
transaction every few seconds. A process paused past its TTL (SIGSTOP, a VM migration, a GC
stall) wakes to one of two things: its lease was not adopted yet, and the next renewal keeps it;
or it was, and both the renewal and the next write transaction say so — the engine then stops
taking events and exits with LeaseLost, never finishing, publishing or launching for runs that
are not its own any more. Between the wake-up and that discovery, `fresh()` (our own clock's
view of the last renewal) keeps a worker from launching and the loop from publishing.

Two processes under one instance name on one host are refused (the second is told the first's
pid); the lease of a dead predecessor of the same name on this host is expired at once, so its
runs are adopted without waiting for the TTL (a restart after a crash); one held elsewhere is
waited for until it expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from coordinator.errors import CoordinatorError, SettingsError, StoreError
from coordinator.launchers.process import _proc_start_time as process_start
from coordinator.settings import Settings
from coordinator.store import StateStore, Tx
from coordinator.store import leases as L

log = logging.getLogger("coordinator.lease")


class LeaseLost(CoordinatorError):
    """This instance's lease was adopted by another (it was paused or cut off past its TTL)."""

    def __init__(self, lease: str, detail: str) -> None:
        self.lease, self.detail = lease, detail
        super().__init__(
            f"lease {lease} lost: {detail}; this instance stopped taking events and wrote nothing "
            "for the runs it no longer owns"
        )


class LeaseConflict(CoordinatorError):
    """Another live process holds this instance name."""


def process_alive(pid: int, start: str | None) -> bool:
    now = process_start(pid)
    return now is not None and (start is None or now == start)


class LeaseKeeper:
    def __init__(
        self,
        store: StateStore,
        settings: Settings,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
    ) -> None:
        self.store, self.clock = store, clock
        self.name = name or settings.instance_name
        self.ttl_s, self.renew_s = settings.lease_ttl_s, settings.lease_renew_s
        if self.renew_s * 2 > self.ttl_s:
            raise SettingsError(
                f"COORD_LEASE_RENEW_S ({self.renew_s:g}) must be at most half of COORD_LEASE_TTL_S "
                f"({self.ttl_s:g}): a lease must survive a late renewal"
            )
        self.host = host or socket.gethostname()
        self.pid = os.getpid()
        self.lease: L.LeaseRow | None = None
        self.lost: LeaseLost | None = None
        self.inherited: list = []  # runs of this name from before leases existed (see acquire)
        self.renewals = 0
        self.holds = 0  # fenced transactions (bench/leases.py weighs the fence by them)
        self._renewed = time.monotonic()  # when the last successful renewal began
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def id(self) -> str:
        assert self.lease is not None, "acquire() first"
        return self.lease.lease_id

    # ------------------------------------------------------------------ start-up
    def acquire(self) -> L.LeaseRow:
        """Take a new lease for this name (see the module docstring for a predecessor's)."""
        deadline = time.monotonic() + self.ttl_s + 5.0
        me = process_start(self.pid)
        while True:
            begun = time.monotonic()
            with self.store.begin() as tx:
                now = self.clock()
                waiting = None
                for old in L.named(tx, self.name):
                    if old.expires_at < now:
                        continue  # expired: adoption takes it
                    if old.host == self.host:
                        if (old.pid, old.pid_start) == (self.pid, me):
                            L.expire(tx, old.lease_id, now, "replaced by a later instance of this process")
                        elif process_alive(old.pid, old.pid_start):
                            raise LeaseConflict(
                                f"instance name {self.name!r} is already served by pid {old.pid} on this "
                                f"host (lease {old.lease_id}); stop it first, or give this one another "
                                "COORD_INSTANCE_NAME"
                            )
                        else:
                            L.expire(tx, old.lease_id, now, f"pid {old.pid} is gone")
                    else:
                        waiting = old
                if waiting is None:
                    self.lease = L.insert(tx, self.name, self.host, self.pid, me, now, self.ttl_s)
                    self.inherited = L.adopt_legacy(tx, self.name, self.lease.lease_id)
                    self._renewed = begun
                    log.info("lease %s taken (ttl %g s)", self.lease.lease_id, self.ttl_s)
                    return self.lease
            if time.monotonic() > deadline:
                raise LeaseConflict(
                    f"instance name {self.name!r} is held by {waiting.lease_id} on {waiting.host} "
                    f"(pid {waiting.pid}), which keeps renewing it; give this one another COORD_INSTANCE_NAME"
                )
            log.warning(
                "instance name %r is held by %s on %s until it expires; waiting",
                self.name,
                waiting.lease_id,
                waiting.host,
            )
            time.sleep(min(1.0, max(0.05, waiting.expires_at - now)))

    def start(self) -> LeaseKeeper:
        self._thread = threading.Thread(target=self._run, name="coord-lease", daemon=True)
        self._thread.start()
        return self

    # ------------------------------------------------------------------ renewal
    def _run(self) -> None:
        while not self._stop.wait(self.renew_s):
            self.renew()

    def renew(self) -> bool:
        """One renewal (the thread's step; callable directly in tests). False once lost."""
        if self.lost is not None:
            return False
        begun = time.monotonic()
        try:
            with self.store.begin() as tx:
                kept = L.renew(tx, self.id, self.clock(), self.ttl_s)
        except StoreError as exc:  # not renewed: fresh() runs out, the store may come back first
            log.warning("lease %s not renewed: %s", self.id, exc)
            return True
        if not kept:
            self._lose("it expired and was adopted while this process was not renewing it")
            return False
        self._renewed, self.renewals = begun, self.renewals + 1
        return True

    def _lose(self, detail: str) -> None:
        if self.lost is None:
            self.lost = LeaseLost(self.id, detail)
            log.error("%s", self.lost)

    def fresh(self) -> bool:
        """Renewed recently enough that no other instance can have adopted this lease yet:
        within the TTL less one renewal period, by this process's monotonic clock."""
        return self.lost is None and time.monotonic() - self._renewed < self.ttl_s - self.renew_s

    def wait_fresh(self, timeout_s: float | None = None) -> bool:
        """Block while the lease is stale but not known lost (a renewal is due or the store is
        slow); True once fresh, False when lost (or `timeout_s` passed)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.fresh():
            if self.lost is not None or (deadline is not None and time.monotonic() > deadline):
                return False
            time.sleep(0.05)
        return True

    # ------------------------------------------------------------------ fencing
    def hold(self, tx: Tx) -> None:
        """The fence of a write transaction: raises LeaseLost unless this lease is live."""
        if self.lost is not None:
            raise self.lost
        self.holds += 1
        L.hold(tx, self.id, self._adopted)  # raised by the transaction, with its next answer

    def _adopted(self) -> LeaseLost:
        self._lose("another instance adopted it (this process was paused or cut off past its TTL)")
        assert self.lost is not None
        return self.lost

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def release(self) -> int | None:
        """Stop renewing and end the lease; the runs left running under it (None: not ours any
        more, or the store did not answer — then it expires and is adopted after the TTL)."""
        self.stop()
        if self.lease is None or self.lost is not None:
            return None
        try:
            with self.store.begin() as tx:
                return L.release(tx, self.id, self.clock())
        except StoreError as exc:
            log.warning("lease %s not released (%s); it expires in %g s", self.id, exc, self.ttl_s)
            return None


def run_lease(owner: str | None, leases: dict[str, L.LeaseRow], now: float) -> str:
    """A run owner's lease as the views show it: live, expired, released, ended, or adopted by
    whom ('' for a run nobody claimed; 'unknown' for an owner without a lease row)."""
    if not owner:
        return ""
    lease = leases.get(owner)
    if lease is None:
        return "unknown"
    state = lease.status(now)
    return f"adopted by {lease.adopted_by}" if state == "adopted" else state


def orphaned(runs: list, leases: dict[str, L.LeaseRow], now: float) -> list:
    """The starting or running runs whose owner is not alive (expired, released, unknown lease):
    a live instance adopts them within a few seconds; with none live they wait for one."""
    return [r for r in runs if r.state in L.ACTIVE and run_lease(r.owner, leases, now) not in ("live", "")]
