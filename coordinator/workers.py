"""Worker threads: they start (or re-attach to) runs, wait for them and report back to the loop.

Only the loop's thread writes to the store (in its turns' transactions), so workers never
contend for it: `Started(run, handle)` is put once the launcher has started the job and
`Done(run, result)` when it ended, and the loop's next turn `take`s them. A crash before the
handle is stored is what recovery.py covers.

A launcher whose start only spawns a process (`Launcher.quick_start`) has its start asked for
on the loop's own thread, straight after the commit that claimed the run (`Launcher.begin`:
the request written to the process spawner, which makes the folder and execs the job); a
turn's starts are all asked first, then their answers (the pids) read on that thread too
(`start_many`), and only the wait goes to a worker thread. A spawn handed to a thread waited
for that thread to be scheduled and then fought the loop for the interpreter lock (1.5-2.5 ms
in a busy coordinator against 0.2 ms alone, bench/launch.py); answers read on the threads let
the loop run on into its turn while the spawner worked, and on 2 cores that made each exec
later (bench/launch.py on Kafka + PostgreSQL, single over the floor: 5.0 and 6.4 ms reading
them here against 13.4 and 17.5 there, alternating). The order is unchanged: the run was
committed `starting` before its process exists, and its `Started` comes before its `Done`.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coordinator.errors import LaunchError
from coordinator.hooks import Hooks
from coordinator.launchers.base import Handle, Launcher, RunContext, RunResult
from coordinator.store.store import RunRow

log = logging.getLogger("coordinator.engine")


@dataclass(frozen=True, slots=True)
class Started:
    run: RunRow
    handle: Handle


@dataclass(frozen=True, slots=True)
class Done:
    run: RunRow
    result: RunResult


Report = Started | Done


class StartedHold:
    """`Started` reports held back for up to `hold_s`, so that the store is not written to while
    the jobs they started are starting up, and a job that ends by then has its handle written with
    its end, in one transaction instead of two.

    Safe to hold: the run is in the store as `starting` since its claim, and a crash before its
    handle is written is covered by recovery.py, which finds the process by its run folder. What
    `pass_on` returns is written now: everything as soon as a `Done` is among it (or the caller
    writes anyway), else nothing until the oldest held report is `hold_s` old."""

    def __init__(self, hold_s: float = 0.05, clock: Callable[[], float] | None = None) -> None:
        self.hold_s, self._clock = hold_s, clock or time.monotonic
        self._held: list[Report] = []
        self._since = 0.0

    def pass_on(self, reports: list[Report], write_anyway: bool = False) -> list[Report]:
        if self._held:
            reports = self._held + reports
        elif reports:
            self._since = self._clock()
        if write_anyway or not reports or any(isinstance(r, Done) for r in reports):
            self._held = []
            return reports
        if self._clock() - self._since >= self.hold_s:
            self._held = []
            return reports
        self._held = reports
        return []

    def __bool__(self) -> bool:
        return bool(self._held)


class WorkerThreads:
    """Daemon threads that run tasks. Daemons, so that a coordinator stopping (or a CLI exiting)
    never waits for a long job: the job runs on, and the next start re-attaches it.

    A task goes to an idle thread when there is one, else to a new thread until `size` (the
    pools' total): a task never waits behind a long job while a pool has room, and short runs
    reuse a few threads instead of creating one each (~0.5 ms on the loop's thread). Idle
    threads are counted by tokens on a deque, whose append and pop are atomic: a submit that
    pops a token has reserved that thread, with no lock on either side."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tasks: queue.SimpleQueue[tuple[Callable[..., None], tuple[object, ...]]] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self._idle: collections.deque[None] = collections.deque()  # one token per idle thread

    def submit(self, fn: Callable[..., None], *args: object) -> None:
        self.tasks.put((fn, args))
        try:
            self._idle.pop()  # that thread takes this task (or an earlier one: the queue is FIFO)
        except IndexError:
            if len(self.threads) < self.size:
                thread = threading.Thread(
                    target=self._work, daemon=True, name=f"coord-worker-{len(self.threads)}"
                )
                self.threads.append(thread)
                thread.start()

    def _work(self) -> None:
        get, idle = self.tasks.get, self._idle
        while True:
            fn, args = get()
            try:
                fn(*args)
            except Exception:  # never lose the thread (and its token) to a task's bug
                log.exception("worker task failed")
            idle.append(None)


class Workers:
    """The runs in flight: `start` hands a claimed run to a thread, `take` returns what the
    threads reported since the last turn. `context(run)` and `launcher(run)` come from the
    engine (the spec and the launchers it holds)."""

    def __init__(
        self,
        size: int,
        context: Callable[[RunRow], RunContext],
        launcher: Callable[[RunRow], Launcher],
        hooks: Hooks,
    ) -> None:
        self.threads = WorkerThreads(size)
        self._context, self._launcher, self._hooks = context, launcher, hooks
        # SimpleQueue: workers put, the loop takes, with no Python-level lock on either side
        self._reports: queue.SimpleQueue[Report] = queue.SimpleQueue()
        self._inflight: set[str] = set()
        self.may_launch: Callable[[], bool] = lambda: True  # the lease's gate (availability.py)
        # called after each report, from the worker's thread: the loop, if it waits on the bus,
        # takes the report now rather than when its poll times out (a job's end → its downstream)
        self.wake: Callable[[], None] = lambda: None

    @property
    def busy(self) -> bool:
        """Runs are in flight, or reports wait to be taken."""
        return bool(self._inflight) or not self._reports.empty()

    def start(self, run: RunRow, handle: Handle | None = None) -> None:
        """Launch `run` (or, given the `handle` of its job, re-attach to it) and wait for it on a
        thread (`start_many` for a turn's runs)."""
        if handle is not None:
            self._inflight.add(run.run_id)
            self.threads.submit(self._execute, run, handle, None)
        else:
            self.start_many([run])

    def start_many(self, runs: Sequence[RunRow]) -> None:
        """Launch a turn's claimed runs, each waited for on a thread. A quick-starting launcher's
        starts are all asked for first, here on the caller's thread, then their answers read here
        too: the spawner works through them while this thread waits, with the cores to itself
        and the jobs' interpreters. Read on the worker threads, the answers let the loop run on
        into its turn meanwhile, which competed with the spawner for the 2 cores here and made
        each job's exec ~0.45 ms later (bench/spawn.py, traced in `coord serve`)."""
        asked: list[tuple[RunRow, RunContext, Callable[[], Handle]]] = []
        for run in runs:
            self._inflight.add(run.run_id)
            try:
                launcher = self._launcher(run)
            except Exception:  # e.g. a kind that cannot be built: the thread reports it as a result
                launcher = None
            if launcher is None or not launcher.quick_start:
                self.threads.submit(self._execute, run, None, None)
                continue
            ctx = self._context(run)
            try:
                begun = self._begin(run, ctx, launcher)
            except Exception as exc:
                self._reports.put(Done(run, self._failed(run, exc)))
                continue
            if begun is not None:  # None: this instance may not launch (its lease is gone)
                asked.append((run, ctx, begun))
        for run, ctx, begun in asked:
            try:
                handle = begun()
            except Exception as exc:
                self._reports.put(Done(run, self._failed(run, exc)))
                continue
            self._reports.put(Started(run, handle))  # the loop takes it at its next turn
            self.threads.submit(self._execute, run, handle, ctx)

    @property
    def inflight(self) -> set[str]:
        """The ids of the runs a thread waits on (or whose report waits to be taken)."""
        return self._inflight

    def report(self, run: RunRow, result: RunResult) -> None:
        """Report an attempt's end found outside the threads (a lost or overdue attempt)."""
        self._inflight.add(run.run_id)
        self._reports.put(Done(run, result))

    def take(self, block: bool = False) -> list[Report]:
        """What the workers reported since the last call (waiting up to 20 ms for one if `block`
        and runs are in flight)."""
        items: list[Report] = []
        try:
            if block and self._inflight:
                items.append(self._reports.get(timeout=0.02))
            while True:
                items.append(self._reports.get_nowait())
        except queue.Empty:
            pass
        for item in items:
            if isinstance(item, Done):
                self._inflight.discard(item.run.run_id)
        return items

    def _begin(self, run: RunRow, ctx: RunContext, launcher: Launcher) -> Callable[[], Handle] | None:
        """Ask for the run's job to start: what completes the start and gives its handle
        (`Launcher.begin`); None when this instance may not launch."""
        if not self.may_launch():  # the lease is gone: the run is another instance's now
            log.warning("run %s: not launched, this instance lost its lease", run.run_id)
            return None
        self._hooks.emit("before_launch", run)
        return launcher.begin(ctx)

    @staticmethod
    def _failed(run: RunRow, exc: Exception) -> RunResult:
        if isinstance(exc, LaunchError):
            return RunResult(False, error=str(exc))
        # a launcher bug must fail the attempt, not the engine
        log.error("run %s: launcher failed unexpectedly", run.run_id, exc_info=exc)
        return RunResult(False, error=f"launcher error: {exc!r}")

    def _execute(self, run: RunRow, handle: Handle | None, ctx: RunContext | None) -> None:
        """On a worker thread: start (unless `handle` says it runs: re-attached, or started by
        `start_many`), report the handle, wait, report the result."""
        try:
            ctx = ctx or self._context(run)
            launcher = self._launcher(run)
            if handle is None:
                begun = self._begin(run, ctx, launcher)
                if begun is None:
                    return
                handle = begun()
                self._reports.put(Started(run, handle))
                self.wake()
            self._hooks.emit("after_launch", run, handle)
            result = launcher.wait(handle, ctx)
        except Exception as exc:
            result = self._failed(run, exc)
        self._reports.put(Done(run, result))
        self.wake()
