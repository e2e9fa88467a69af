"""The engine: completion events in, exactly-once runs out, job completions back onto the bus.

One loop; each turn does, in this order (the order is what makes it crash-safe):
 1. take a batch of events off the bus (EventIntake);
 2. in one transaction: record the new events (dedupe by event id), compute readiness, create
    runs (unique by job, partition, input set: a replay creates nothing) — started at once
    when their pool has room, else ready; claim due ready runs within their pools;
 3. after that commit: start the claimed runs on worker threads, commit the bus offsets;
 4. in a second transaction, with what the worker threads reported meanwhile: mark the outbox
    events the bus confirmed as sent; record finished attempts (success → the job's output
    events into the outbox; failure → retry with exponential backoff, then failed + a failed
    event, downstream held); record the output events, whose readiness may create and claim
    downstream runs;
 5. after that commit: start those runs, hand the turn's outbox events to the bus (their
    acknowledgement is awaited at a later turn, so the broker's round trip overlaps the next
    batch).
A SIGKILL anywhere replays at most one batch and re-publishes at most the unsent outbox, both
no-ops downstream; runs that were running are re-attached on start-up (`_recover`).
An event's run starts after one database commit — that of its own batch, not also of the
results that came in with it — and the loop never waits on the bus (bench/latency.py).
"""

from __future__ import annotations

import collections
import gc
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coordinator import readiness
from coordinator.bus.base import Bus
from coordinator.errors import BusError, LaunchError, StoreError
from coordinator.events import CompletionEvent, Status
from coordinator.hooks import Hook, Hooks
from coordinator.intake import EventIntake
from coordinator.launchers.base import Handle, InputRef, Launcher, RunContext, RunResult
from coordinator.launchers.registry import build_launcher
from coordinator.outbox import OutboxRelay
from coordinator.publish import Publisher
from coordinator.recovery import find_process, left_no_result
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec
from coordinator.store.store import ACTIVE, OPEN, Finish, RunRow, StateStore, Tx

log = logging.getLogger("coordinator.engine")
CLAIM_POLL_S = 0.5
OWN_EVENTS_KEPT = 100_000


@dataclass
class RunStats:
    """What one `Coordinator.run` call did."""

    events: int = 0
    dead_lettered: int = 0
    runs_created: int = 0
    launched: int = 0
    succeeded: int = 0
    failed: int = 0
    blocked: int = 0
    retried: int = 0
    published: int = 0


@dataclass(frozen=True)
class _Started:
    run: RunRow
    handle: Handle


@dataclass(frozen=True)
class _Done:
    run: RunRow
    result: RunResult


def output_event_id(run_id: str, attempt: int, dataset: str, status: str) -> str:
    """Deterministic, so a result recorded twice (after a crash) is the same event."""
    return hashlib.sha256(f"{run_id}\n{attempt}\n{dataset}\n{status}".encode()).hexdigest()[:32]


_MISSING = object()


class _Workers:
    """Daemon threads that start and watch runs. Daemons, so that a coordinator stopping (or a
    CLI exiting) never waits for a long job: the job runs on, and the next start re-attaches it.

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


class Coordinator:
    """The service. Build once with a validated spec; `run(...)` it; `close()` it (or use `with`)."""

    def __init__(
        self,
        spec: PipelineSpec,
        settings: Settings,
        bus: Bus | None = None,
        store: StateStore | None = None,
        launchers: Mapping[str, Launcher] | None = None,
        hooks: Iterable[Hook] = (),
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        idle_grace_s: float | None = None,
    ) -> None:
        self.spec, self.settings, self.clock = spec, settings, clock
        self.owner = owner or settings.instance_name
        self._stack = ExitStack()
        if bus is None:
            from coordinator.bus.factory import open_bus

            bus = open_bus(settings)
        self.bus = bus
        self.store = (
            store
            if store is not None
            else self._stack.enter_context(StateStore(settings.resolved_state_url()))
        )
        self.launchers: dict[str, Launcher] = dict(launchers or {})
        self.hooks = Hooks(hooks)
        self.idle_grace_s = (
            idle_grace_s if idle_grace_s is not None else (2.0 if settings.bus == "kafka" else 0.0)
        )
        self._intake: EventIntake | None = None
        self._publisher: Publisher | None = None
        # SimpleQueue: workers put, the loop takes, with no Python-level lock on either side
        self._done: queue.SimpleQueue[_Started | _Done] = queue.SimpleQueue()
        self._inflight: set[str] = set()
        self._own: dict[str, None] = {}  # ids of output events already recorded (insertion order)
        self._workers = _Workers(
            min(256, sum(spec.pool_size(p) for p in {j.pool for j in spec.jobs.values()}) or 1)
        )
        self._recovered = False
        self._runs_dir = (Path(settings.home) / "runs").resolve()  # once: resolving walks the path
        self._outbox_dirty = True  # at start-up, whatever a previous run left unsent
        self._queued: list[CompletionEvent] = []  # put in the outbox by the open transaction
        self._starting: list[RunRow] = []  # runs the open transaction created claimed
        self._publishing = 0  # events handed to the bus, delivery not yet confirmed
        self._acked: list[str] = []  # ids of events the bus confirmed, not yet marked sent
        self._claim_due = 0.0  # when to look for ready runs again (0: at once)
        # whether due ready runs may be waiting (created ready, retried, or not known yet): a run
        # ending frees a pool slot, which is worth a claim only then
        self._ready_waiting = True
        self._pools = {job.pool for job in spec.jobs.values()}
        self._job_pools = {name: job.pool for name, job in spec.jobs.items()}
        self._budgets = {name: job.retries.max_attempts for name, job in spec.jobs.items()}

    # ------------------------------------------------------------------ lifecycle
    @property
    def intake(self) -> EventIntake:
        if self._intake is None:
            self._intake = self._stack.enter_context(
                EventIntake(self.bus, self.settings, spec=self.spec, store=self.store, hooks=self.hooks)
            )
        return self._intake

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            self._publisher = self._stack.enter_context(Publisher(self.bus, self.settings))
        return self._publisher

    def launcher(self, kind: str) -> Launcher:
        if kind not in self.launchers:
            self.launchers[kind] = build_launcher(kind, self.settings)
        return self.launchers[kind]

    def close(self) -> None:
        """Stop taking events. Jobs still running keep running; the next start re-attaches them."""
        self._stack.close()
        self._intake = self._publisher = None

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop
    def run(
        self,
        until_idle: bool = False,
        max_events: int | None = None,
        timeout_s: float | None = None,
        *,
        consume: bool = True,
        stop: Callable[[], bool] | None = None,
    ) -> RunStats:
        """Serve until stopped. Bounded modes for tests, the demo and the CLI:
        `until_idle` — return when no event is pending, no run is ready or running and the
        outbox is empty; `max_events` — return after that many bus messages (once their runs
        have finished); `timeout_s` — return after that long. `consume=False` leaves the bus
        alone (executing runs already in the store, as `coord backfill` does).
        """
        stats = RunStats()
        started = time.monotonic()
        idle_since: float | None = None
        if not self._recovered:
            self._recover(stats)
            self._recovered = True
            # What exists now (spec, plans, compiled statements, clients) lives as long as the
            # process: out of the cyclic collector's reach, a full collection — which stopped
            # the loop for ~100 ms with a 1,000-job spec — only walks what came after.
            gc.freeze()
        try:
            while True:
                if timeout_s is not None and time.monotonic() - started >= timeout_s:
                    break
                if stop is not None and stop():
                    break
                consuming = consume and (
                    max_events is None or stats.events + stats.dead_lettered < max_events
                )
                turn_started, taken = time.perf_counter(), stats.events + stats.dead_lettered
                if self._turn(stats, consuming, max_events):
                    taken = stats.events + stats.dead_lettered - taken
                    self.hooks.emit("after_turn", taken, time.perf_counter() - turn_started)
                    idle_since = None
                    continue
                done_consuming = not consume or (
                    max_events is not None and stats.events + stats.dead_lettered >= max_events
                )
                if (until_idle or done_consuming) and self._idle(consume and not done_consuming):
                    now = time.monotonic()
                    idle_since = idle_since if idle_since is not None else now
                    if done_consuming or now - idle_since >= self.idle_grace_s:
                        break
                else:
                    idle_since = None
        finally:
            self._settle(stats)  # what this loop published is on the bus (and marked) when it returns
        return stats

    def _turn(self, stats: RunStats, consuming: bool, max_events: int | None) -> bool:
        """One turn of the loop; True when it did anything.

        Take a batch off the bus. First transaction: record its events, create the runs they
        make ready (claimed at once where their pool has room) and claim due ready runs; after
        its commit, start those runs and commit the bus offsets. Second transaction, with what
        the workers reported meanwhile (often the end of runs just started): mark the events
        the bus confirmed sent, record finished attempts and their output events (which feed
        readiness and the outbox), start the downstream runs they make ready, publish the
        outbox events (their delivery is awaited while the next turn works).

        Two transactions, so that an event's run starts after the commit of the events before
        it, not also after every result that came in with them. Offsets move only after the
        state is durable, runs start only once claimed, an event counts as sent only once the
        bus has it.
        """
        batch = None
        busy = bool(self._inflight) or not self._done.empty() or self._publishing > 0
        if consuming:
            want = self.settings.batch_max_events
            if max_events is not None:
                want = min(want, max_events - stats.events - stats.dead_lettered)
            try:
                batch = self.intake.poll(want, 0.005 if busy else 0.05, self._own_skip)
            except BusError as exc:  # the bus is away: what was not committed comes back later
                log.warning("bus: %s; polling again in 1 s", exc)
                time.sleep(1.0)
                return False
            stats.events += len(batch.events) + batch.skipped
            stats.dead_lettered += batch.dead_lettered
        elif not busy:
            time.sleep(0.02)
        if self._outbox_dirty:
            self._relay(stats)
        events = self._not_own(batch.events) if batch is not None else []
        queued: list[CompletionEvent] = []
        launched = 0
        now = self.clock()
        if events or now >= self._claim_due:

            def record_and_claim(tx: Tx) -> list[RunRow]:
                if events:
                    self._record(tx, events, stats, now)
                return self._claim(tx, stats, now) if self.clock() >= self._claim_due else []

            queued, runs = self._transact(record_and_claim)
            launched += self._start(runs, stats)
        if batch is not None and len(batch):
            try:
                self.intake.commit(batch, wait=False)  # offsets only after the state above is durable
            except BusError as exc:  # e.g. a rebalance: the batch is redelivered, a no-op then
                log.warning("bus: offsets not committed (%s); the batch will be replayed", exc)
        items = self._take_results(block=not consuming)
        sent = self._delivered(stats)
        if items or sent:
            now = self.clock()

            def finish(tx: Tx) -> list[RunRow]:
                if sent:
                    tx.outbox_mark_sent_events(sent)
                outputs = self._write_results(tx, items, stats, now)
                if outputs:
                    self._record(tx, outputs, stats, now)
                    self._remember_own(outputs)
                return []

            more, runs = self._transact(finish)
            queued += more
            launched += self._start(runs, stats)
        self._publish(queued)
        return bool((batch is not None and len(batch)) or items or launched or queued)

    def _transact(self, work: Callable[[Tx], list[RunRow]]) -> tuple[list[CompletionEvent], list[RunRow]]:
        """Run `work` in one transaction; (the outbox events it queued, the runs it made
        starting — created claimed, or claimed by `work`'s result), once it committed. A
        StoreError ends the loop: nothing is committed."""
        self._queued, self._starting = [], []
        with self.store.begin() as tx:
            claimed = work(tx)
        queued, self._queued = self._queued, []
        starting, self._starting = self._starting + claimed, []
        return queued, starting

    def _start(self, runs: Sequence[RunRow], stats: RunStats) -> int:
        for run in runs:
            self._start_thread(run, None, stats)
        return len(runs)

    def _idle(self, check_bus: bool) -> bool:
        if self._inflight or not self._done.empty() or self._publishing:
            return False
        if check_bus and not self.intake.caught_up():  # assigned and read to the end, not "lag 0"
            return False
        with self.store.begin() as tx:
            return tx.count_runs(OPEN) == 0 and tx.outbox_count() == 0

    # ------------------------------------------------------------------ events → runs
    def _remember_own(self, events: Sequence[CompletionEvent]) -> None:
        """Output events recorded with their run: when they come back off the bus they are skipped
        before touching the store (a bounded memory; one that is forgotten is a no-op replay)."""
        own = self._own
        for e in events:
            own[e.event_id] = None
        while len(own) > OWN_EVENTS_KEPT:
            del own[next(iter(own))]

    def _own_skip(self, event_id: bytes) -> bool:
        """Whether a message (by its event id header) is an output event this engine recorded:
        then it is not even decoded."""
        own = self._own
        return bool(own) and own.pop(event_id.decode(), _MISSING) is not _MISSING

    def _not_own(self, events: Sequence[CompletionEvent]) -> Sequence[CompletionEvent]:
        own = self._own
        if not own:
            return events
        kept = []
        for e in events:
            if e.event_id in own:
                del own[e.event_id]
            else:
                kept.append(e)
        return kept

    def _record(
        self, tx: Tx, events: Sequence[CompletionEvent], stats: RunStats, now: float | None = None
    ) -> list[RunRow]:
        """Record events, create the runs they make ready; part of the caller's transaction."""
        now = self.clock() if now is None else now
        fresh = tx.insert_events(events, now)
        if not fresh:
            return []
        snap = tx.load_snapshot(self.spec, fresh)
        before = dict(snap.latest)
        candidates = readiness.step(self.spec, snap, fresh)
        tx.save_versions([v for k, v in snap.latest.items() if before.get(k) != v], now)
        pools = {self._job_pools[c.job] for c in candidates if c.violation is None}
        room = {pool: tx.pool_room(pool, self.spec.pool_size(pool), now) for pool in pools}
        created = tx.insert_runs(candidates, self._job_pools, self._budgets, now, room=room, owner=self.owner)
        for run in created:
            if run.state == "blocked":
                self._queue(tx, self._failed_events(run, run.error or "blocked"), now)
                stats.blocked += 1
                self.hooks.emit("after_blocked", run, run.error or "")
            elif run.state == "starting":  # created claimed: its pool had room
                self._starting.append(run)
            else:
                self._claim_due, self._ready_waiting = 0.0, True
        stats.runs_created += len(created)
        self.hooks.emit("after_ingest", fresh, created)
        return created

    def _failed_events(self, run: RunRow, error: str) -> list[CompletionEvent]:
        job = self.spec.jobs.get(run.job)
        outputs = job.outputs if job else ()
        return [
            CompletionEvent(
                event_id=output_event_id(run.run_id, run.attempt, ds, "failed"),
                dataset=ds,
                partition=run.partition,
                status=Status.FAILED,
                producer="coordinator",
                producer_run_id=run.run_id,
                error=error[:20000],
                attributes={"job": run.job},
            )
            for ds in outputs
        ]

    # ------------------------------------------------------------------ launching
    def _claim(self, tx: Tx, stats: RunStats, now: float) -> list[RunRow]:
        """Claim due ready runs within their pools, in the turn's transaction. Skipped while
        nothing can have changed: ready runs appear (created while their pool was full, or
        retried) or pool slots are freed through this loop — a freed slot counts only while a
        claim may find a ready run — except runs queued by other processes (`coord retry`,
        another instance, whose full pool this one frees), which a look every CLAIM_POLL_S
        catches."""
        self._claim_due = now + CLAIM_POLL_S
        ready: list[RunRow] = []
        found = False
        for pool in self._pools:
            claimed = tx.claim(pool, self.spec.pool_size(pool), self.owner, now, wait=False)
            if claimed is None:  # another instance is claiming from this pool: next turn
                self._claim_due, found = 0.0, True
                continue
            found = found or bool(claimed)
            for run in claimed:
                reason = self._unlaunchable(run)
                if reason:
                    tx.finish(run.run_id, run.attempt, "blocked", now, error=reason)
                    self._queue(tx, self._failed_events(run, reason), now)
                    stats.blocked += 1
                    self.hooks.emit("after_blocked", run, reason)
                else:
                    ready.append(run)
        self._ready_waiting = found  # a claim that found none: none is due (until one is created)
        return ready

    def _unlaunchable(self, run: RunRow) -> str | None:
        """Checked again at launch: a retried blocked run must not start on incompatible data."""
        if run.job not in self.spec.jobs:
            return f"job {run.job!r} is no longer in the spec"
        violation = readiness.check_contract(self.spec, run.job, run.inputs)
        return str(violation) if violation else None

    def context(self, run: RunRow) -> RunContext:
        job = self.spec.jobs[run.job]
        workdir = self._runs_dir / run.run_id / f"attempt-{run.attempt}"
        inputs = tuple(
            InputRef(v.dataset, v.partition, v.event_id, v.location, v.row_count, v.columns)
            for v in run.inputs
        )
        return RunContext(
            run_id=run.run_id,
            job=run.job,
            partition=run.partition,
            attempt=run.attempt,
            settings=job.settings,
            inputs=inputs,
            outputs=job.outputs,
            workdir=workdir,
            timeout_s=job.timeout_s,
        )

    def _start_thread(self, run: RunRow, handle: Handle | None, stats: RunStats) -> None:
        stats.launched += handle is None
        self._inflight.add(run.run_id)
        self._workers.submit(self._execute, run, handle)

    def _execute(self, run: RunRow, handle: Handle | None) -> None:
        """On a worker thread: start (or re-attach), hand the handle over, wait, hand the result over.

        Only the loop's thread writes to the store (in its turns' transactions), so workers
        never contend for it; a crash before the handle is stored is what recovery.py covers.
        """
        try:
            ctx = self.context(run)
            launcher = self.launcher(self.spec.jobs[run.job].kind)
            if handle is None:
                self.hooks.emit("before_launch", run)
                handle = launcher.start(ctx)
                self._done.put(_Started(run, handle))
            self.hooks.emit("after_launch", run, handle)
            result = launcher.wait(handle, ctx)
        except LaunchError as exc:
            result = RunResult(False, error=str(exc))
        except Exception as exc:  # a launcher bug must fail the attempt, not the engine
            log.exception("run %s: launcher failed unexpectedly", run.run_id)
            result = RunResult(False, error=f"launcher error: {exc!r}")
        self._done.put(_Done(run, result))

    # ------------------------------------------------------------------ results
    def _take_results(self, block: bool = False) -> list[_Started | _Done]:
        """What the workers reported since the last turn (waiting up to 20 ms for one if `block`)."""
        items: list[_Started | _Done] = []
        try:
            if block and self._inflight:
                items.append(self._done.get(timeout=0.02))
            while True:
                items.append(self._done.get_nowait())
        except queue.Empty:
            pass
        return items

    def _write_results(
        self, tx: Tx, items: Sequence[_Started | _Done], stats: RunStats, now: float
    ) -> list[CompletionEvent]:
        """Store started handles and finished attempts; returns the output events of the runs
        that succeeded (queued in the outbox here; the caller records them)."""
        if not items:
            return []
        dones = [it for it in items if isinstance(it, _Done)]
        handles = {(it.run.run_id, it.run.attempt): it.handle for it in items if isinstance(it, _Started)}
        for done in dones:
            self._inflight.discard(done.run.run_id)
            self.hooks.emit("after_finish", done.run, done.result)
        # an attempt that started and finished within one turn is written once, with its handle
        plans = [
            (
                done,
                self._plan(
                    done.run, done.result, now, handles.pop((done.run.run_id, done.run.attempt), None)
                ),
            )
            for done in dones
        ]
        if handles:
            tx.set_running_many([(i, a, h) for (i, a), h in handles.items()], now)
        finished = tx.finish_many([f for _, f in plans], now) if plans else set()
        outputs: list[CompletionEvent] = []
        for done, plan in plans:
            run, result = done.run, done.result
            if run.run_id not in finished:
                continue
            if result.succeeded:
                stats.succeeded += 1
                outputs += self._output_events(run, result, now)
            elif plan.state == "blocked":
                self._queue(tx, self._failed_events(run, result.error or "blocked"), now)
                stats.blocked += 1
                self.hooks.emit("after_blocked", run, result.error or "blocked")
            elif plan.retry_at is not None:
                self._ready_waiting = True
                self._claim_due = min(self._claim_due, plan.retry_at)
                stats.retried += 1
                self.hooks.emit("after_retry_scheduled", run, plan.retry_at - now, result.error)
            else:
                self._queue(tx, self._failed_events(run, result.error or "failed"), now)
                stats.failed += 1
                self.hooks.emit("after_failed", run, result.error)
        if outputs:
            self._queue(tx, outputs, now)
        if dones and self._ready_waiting:
            self._claim_due = 0.0  # pool slots were freed for runs that may be waiting
        return outputs

    def _plan(self, run: RunRow, result: RunResult, now: float, handle: Handle | None = None) -> Finish:
        """How an attempt ends: succeeded, blocked, retried after backoff, or failed for good.

        A launcher that reports details {"blocked": true} (the input does not fit, e.g. a model
        signature) is not retried: the same inputs would be refused again. Like a contract
        violation, it waits for new input versions or `coord retry`.
        """
        details = dict(result.details) or None
        if result.succeeded:
            return Finish(
                run.run_id, run.attempt, "succeeded", None, result.log_path, details=details, handle=handle
            )
        if result.details.get("blocked"):
            return Finish(
                run.run_id,
                run.attempt,
                "blocked",
                result.error,
                result.log_path,
                details=details,
                handle=handle,
            )
        job = self.spec.jobs.get(run.job)
        retry_at = None
        if job is not None and run.attempt < run.max_attempts:
            retry_at = now + job.retries.delay_s(run.attempt)
        return Finish(
            run.run_id, run.attempt, "failed", result.error, result.log_path, retry_at, details, handle
        )

    def _output_events(self, run: RunRow, result: RunResult, now: float) -> list[CompletionEvent]:
        reports = {o.dataset: o for o in result.outputs}
        produced_at = datetime.fromtimestamp(now, UTC)
        events = []
        for ds in self.spec.jobs[run.job].outputs:
            o = reports.get(ds)
            events.append(
                CompletionEvent(
                    event_id=output_event_id(run.run_id, run.attempt, ds, "succeeded"),
                    dataset=ds,
                    partition=run.partition,
                    producer="coordinator",
                    producer_run_id=run.run_id,
                    produced_at=produced_at,
                    row_count=o.row_count if o else None,
                    location=o.location if o else None,
                    columns=o.columns if o else None,
                    attributes={"job": run.job, **(dict(o.attributes) if o else {})},
                )
            )
        return events

    # ------------------------------------------------------------------ outbox
    def _queue(self, tx: Tx, events: Sequence[CompletionEvent], now: float) -> None:
        """Into the outbox, in the caller's transaction; published by this turn once it commits."""
        if events:
            tx.outbox_add(events, now)
            self._queued.extend(events)

    def _publish(self, events: Sequence[CompletionEvent]) -> None:
        """Hand committed outbox events to the bus without waiting; their acknowledgements come
        back through `_on_delivery` while the loop goes on, and `_delivered` collects them."""
        if not events:
            return
        try:
            self.publisher.publish_many(events, self._on_delivery)
            self._publishing += len(events)
        except BusError as exc:  # they stay unsent in the outbox; the relay publishes them later
            log.warning("bus: outbox not published yet (%s)", exc)
            self._outbox_dirty = True

    def _on_delivery(self, event: CompletionEvent, error: str | None) -> None:
        self._publishing -= 1
        if error is None:
            self._acked.append(event.event_id)
        else:  # it stays unsent in the outbox; the relay publishes it again
            log.warning("bus: event %s not delivered (%s)", event.event_id, error)
            self._outbox_dirty = True

    def _delivered(self, stats: RunStats, wait: bool = False) -> list[str]:
        """Ids of the events published by earlier turns that the bus has confirmed since; with
        `wait`, all of them."""
        if not self._publishing and not self._acked:
            return []
        try:
            if wait:
                self.publisher.flush()
            else:
                self.publisher.poll()
        except BusError as exc:  # unsent events stay in the outbox for the relay
            log.warning("bus: outbox not published yet (%s)", exc)
            self._outbox_dirty = True
        ids, self._acked = self._acked, []
        stats.published += len(ids)
        return ids

    def _settle(self, stats: RunStats) -> None:
        """Wait for what was published and mark it sent (when the loop returns). A store that
        fails here (the loop may be ending because of it) leaves the events unsent in the outbox,
        published again by the next start: a duplicate, never a loss."""
        sent = self._delivered(stats, wait=True)
        if sent:
            try:
                with self.store.begin() as tx:
                    tx.outbox_mark_sent_events(sent)
            except StoreError as exc:
                log.warning("outbox: %d published events not marked sent (%s)", len(sent), exc)

    def _relay(self, stats: RunStats) -> None:
        """Publish whatever the outbox holds unsent from before (a crash, a bus outage)."""
        self._outbox_dirty = False
        try:
            stats.published += OutboxRelay(self.store, self.publisher).drain()
        except BusError as exc:  # unsent events stay in the outbox for the next turn
            log.warning("bus: outbox not published yet (%s)", exc)
            self._outbox_dirty = True

    # ------------------------------------------------------------------ restart
    def _recover(self, stats: RunStats) -> None:
        """Re-attach to this instance's runs that were starting or running when it stopped.

        A stored handle whose process lives (or left its exit code) is waited on; a run whose
        process is gone without a result, or that never got a handle and has no process, is
        launched again in the same attempt — once, since the new handle is stored first thing.
        """
        with self.store.begin() as tx:
            active = tx.active_runs(self.owner)
        for run in active:
            if run.job not in self.spec.jobs:
                continue
            kind = self.spec.jobs[run.job].kind
            handle = run.handle
            if handle is not None:
                alive = self.launcher(kind).is_alive(handle)
                if not alive and left_no_result(handle):
                    handle = None
            else:
                handle = find_process(kind, self.context(run).workdir)
            if handle is not None and run.handle is None:
                with self.store.begin() as tx:
                    tx.set_running(run.run_id, run.attempt, handle, self.clock())
            log.info(
                "run %s %s[%s]: %s after restart",
                run.run_id,
                run.job,
                run.partition,
                "re-attached" if handle else "re-launched",
            )
            self._start_thread(run, handle, stats)


__all__ = ["ACTIVE", "Coordinator", "RunStats"]
