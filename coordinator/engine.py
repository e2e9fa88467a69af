"""The engine: completion events in, exactly-once runs out, job completions back onto the bus.

One loop; each turn (`Coordinator._turn`) does, in this order (the order is what makes it
crash-safe):
 1. take a batch of events off the bus (EventIntake), skipping the coordinator's own (OwnEvents),
    and those POST /events handed over in this process (handover.py: recorded here first, then
    published through the outbox, so their runs do not wait for the bus's round trip);
 2. in one transaction: record the new events (dedupe by event id), compute readiness, create
    runs (unique by job, partition, input set: a replay creates nothing) — started at once
    when their pool has room, else ready; claim due ready runs within their pools;
 3. after that commit: start the claimed runs (a spawn on the loop's thread, the wait on a
    worker thread: workers.py), commit the bus offsets;
 4. in a second transaction, with what the worker threads reported meanwhile: mark the outbox
    events the bus confirmed as sent; store the handles of started jobs (held back while the
    jobs start up, for up to 50 ms or until they end: workers.StartedHold); record finished
    attempts (success → the job's output events into the outbox; failure → retry with
    exponential backoff, then failed + a failed event, downstream held); record the output
    events, whose readiness may create and claim downstream runs;
 5. after that commit: start those runs, hand the turn's outbox events to the bus (their
    acknowledgement is awaited at a later turn, so the broker's round trip overlaps the next
    batch) — held while jobs start (until none was started for 20 ms, 200 ms at most), so
    that the bus's work does not compete with their start (outbox.py).
State before offsets; the outbox in the same transaction as the state that caused it
(`_transact`); offsets and publishing after the commit. A SIGKILL anywhere replays at most
one batch and re-publishes at most the unsent outbox, both no-ops downstream; runs that were
running are re-attached on start-up (recovery.py). An event's run starts after one database
commit — that of its own batch, not also of the results that came in with it — and the loop
never waits on the bus (bench/latency.py).

Its rooms: turn.py (what a turn carries: `Step`, `RunStats`, the `ClaimSchedule`), steps.py
(what a turn writes in its transactions: record, claim, write results), outcome.py (results →
state and events, pure), workers.py (threads that run jobs), outbox.py (publishing,
acknowledgements, the relay), own_events.py, recovery.py; and availability.py (the lease,
adoption, the watchdog) through the turn's periodic hook.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from coordinator.admission import Admission
from coordinator.availability import Availability
from coordinator.bus.base import Bus
from coordinator.bus.kafka_wake import WokenBus
from coordinator.errors import BusError
from coordinator.events import CompletionEvent
from coordinator.handover import Handed, Handover, settle, write_audits
from coordinator.hooks import Hook, Hooks
from coordinator.intake import EventIntake, IntakeBatch
from coordinator.launchers.base import Launcher, RunContext
from coordinator.launchers.registry import build_launcher
from coordinator.outbox import Outbox
from coordinator.outcome import output_event_id
from coordinator.own_events import OwnEvents
from coordinator.publish import Publisher
from coordinator.recovery import recover
from coordinator.rundirs import attempt_dir, runs_root
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec
from coordinator.steps import TurnSteps
from coordinator.store.store import OPEN, RunRow, StateStore, Tx
from coordinator.turn import ClaimSchedule, RunStats, Step, unless_fatal
from coordinator.workers import StartedHold, Workers

log = logging.getLogger("coordinator.engine")


class Coordinator:
    """The service. Build once with a validated spec; `run(...)` it; `close()` it (or use `with`).

    `every_turn`: callables the loop calls at the start of each turn with the clock's time —
    periodic work such as renewing a lease; what one raises ends the loop. `freeze_gc`: move
    what exists after start-up out of the cyclic collector's reach (a long-lived service)."""

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
        every_turn: Iterable[Callable[[float], None]] = (),
        freeze_gc: bool = False,
    ) -> None:
        self.spec, self.settings, self.clock = spec, settings, clock
        self.owner = owner or settings.instance_name
        self._stack = ExitStack()
        if bus is None:
            from coordinator.bus.factory import open_bus

            bus = open_bus(settings)
        self.bus = bus
        self.store = store or self._stack.enter_context(StateStore(settings.resolved_state_url()))
        self.launchers: dict[str, Launcher] = dict(launchers or {})
        self.hooks = Hooks(hooks)
        kafka_grace = 2.0 if settings.bus == "kafka" else 0.0  # a consumer group settles slowly
        self.idle_grace_s = idle_grace_s if idle_grace_s is not None else kafka_grace
        self.every_turn, self.freeze_gc = list(every_turn), freeze_gc
        self._intake: EventIntake | None = None
        self._publisher: Publisher | None = None
        self.workers = Workers(
            min(256, sum(spec.pool_sizes.values()) or 1), self.context, self._launcher_of, self.hooks
        )
        self.outbox = Outbox(self.store, lambda: self.publisher)
        self.own = OwnEvents()
        self.claims = ClaimSchedule()
        self._own_stats = RunStats()  # what record_own did since the last turn counted it
        self.steps = TurnSteps(spec, self.hooks, self.claims)
        self._recovered = False
        self._runs_dir = runs_root(settings.home).resolve()  # once: resolving walks the path
        self.ha = Availability(self)  # the lease, adoption and the run watchdog
        self.workers.may_launch, self.outbox.may_publish = self.ha.may_launch, self.ha.may_publish
        self.workers.wake = self._wake
        self.held = StartedHold()  # handles written with the job's end, or 50 ms after its start
        self.admission = Admission(spec)  # the intake's check, for the events handed over
        self.handover = Handover(self._wake)  # POST /events' events and audits, for the next turn
        self.every_turn.append(self.ha.tick)

    # ------------------------------------------------------------------ lifecycle
    @property
    def intake(self) -> EventIntake:
        if self._intake is None:
            bus = WokenBus(self.bus)  # a consumer a worker's report can wake (bus/kafka_wake.py)
            self._intake = self._stack.enter_context(
                EventIntake(bus, self.settings, spec=self.spec, store=self.store, hooks=self.hooks)
            )
        return self._intake

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            self._publisher = self._stack.enter_context(Publisher(self.bus, self.settings))
        return self._publisher

    def _wake(self) -> None:
        """A worker reported: the loop's poll of the bus returns now (where the bus can do that)."""
        if self._intake is not None:
            self._intake.wakeup()

    def launcher(self, kind: str) -> Launcher:
        if kind not in self.launchers:
            self.launchers[kind] = build_launcher(kind, self.settings)
        return self.launchers[kind]

    def _launcher_of(self, run: RunRow) -> Launcher:
        return self.launcher(self.spec.jobs[run.job].kind)

    def context(self, run: RunRow) -> RunContext:
        job = self.spec.jobs[run.job]
        return RunContext(
            run.run_id, run.job, run.partition, run.attempt,
            settings=job.settings, inputs=run.inputs, outputs=job.outputs,
            workdir=self._workdir(run), timeout_s=job.timeout_s,
        )  # fmt: skip

    def _workdir(self, run: RunRow) -> Path:
        return attempt_dir(self._runs_dir, run.run_id, run.attempt)

    def close(self) -> None:
        """Stop taking events and release the lease. Jobs still running keep running: the next
        live instance adopts them at once (`ha.left_running` says how many)."""
        self.ha.end()
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
        alone (executing runs already in the store, as `coord backfill` does). Raises the
        BusError that retrying cannot heal, and the StoreError of a failed transaction.
        """
        stats = RunStats()
        started = time.monotonic()
        idle_since: float | None = None
        if not self.ha.draining:
            self.handover.open()
        if not self._recovered:
            self.owner = self.ha.begin()  # this process's lease: the owner of what it claims
            stats.launched += self._recover()
            self._recovered = True
            if self.freeze_gc:
                # What exists now (spec, plans, compiled statements, clients) lives as long as
                # the process: out of the cyclic collector's reach, a full collection — which
                # stopped the loop for ~100 ms with a 1,000-job spec — only walks what came after.
                gc.freeze()
        try:
            while True:
                if timeout_s is not None and time.monotonic() - started >= timeout_s:
                    break
                if stop is not None and stop():
                    break
                taken = stats.events + stats.dead_lettered
                want = None  # how many messages to take off the bus (None: leave it alone)
                if consume and (max_events is None or taken < max_events):
                    want = self.settings.batch_max_events
                    if max_events is not None:
                        want = min(want, max_events - taken)
                turn_started = time.perf_counter()
                turn, worked = self._turn(want)
                stats.add(turn)
                if worked:
                    taken = turn.events + turn.dead_lettered
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
            if self.held:  # the handles of jobs still starting, written before the loop returns
                now = self.clock()
                held = self.held.pass_on([], write_anyway=True)
                self._transact(now, lambda tx: self.steps.write_results(tx, held, now)[0])
        finally:
            self.handover.close("the engine's loop has returned")  # those requests publish themselves
            stats.published += self.outbox.settle()  # what this loop published is on the bus
        return stats

    def _turn(self, want: int | None) -> tuple[RunStats, bool]:
        """One turn, in the numbered order of the module docstring: what it counted, and whether
        it did anything. Offsets move only after the state is durable, runs start only once
        claimed, an event counts as sent only once the bus has it."""
        stats = RunStats()
        for task in self.every_turn:  # periodic work (e.g. a lease), before anything is taken
            task(self.clock())
        stats.add(self._own_stats)  # what record_own did in those (schedule ticks)
        self._own_stats = RunStats()
        busy = self.workers.busy or self.outbox.publishing > 0 or self.outbox.holding
        # 1. a batch off the bus (or, when not consuming, a short pause while nothing runs)
        batch = None
        if want is not None:
            batch = self._poll(want, 0.005 if busy else 0.05)
            if batch is None:
                return stats, False
            stats.events += len(batch.events) + batch.skipped
            stats.dead_lettered += batch.dead_lettered
        elif not busy:
            time.sleep(0.02)
        stats.published += self.outbox.relay()  # what a crash or an outage left unsent
        self.outbox.release()  # what waited while jobs started (outbox.py)
        # 2. first transaction: the batch's events, the runs they make ready, due claims
        events = self.own.drop(batch.events) if batch is not None else []
        handed = self._admitted(self.handover.take()) if not self.ha.draining else []  # POST /events'
        now = self.clock()
        first = Step()
        if events or handed or self.claims.due(now):
            first = self._record_and_claim(events, handed, now)
        # 3. after its commit: start the claimed runs (then answer the requests), move the offsets
        try:
            launched = self._start(first.start)
        finally:
            settle(handed)
        if batch is not None and len(batch):
            try:
                self.intake.commit(batch, wait=False)
            except BusError as exc:  # e.g. a rebalance: the batch is redelivered, a no-op then
                unless_fatal(exc, "offsets not committed; the batch will be replayed")
        # 4. second transaction: what the workers reported, what the bus confirmed
        sent = self.outbox.delivered()
        reports = self.held.pass_on(self.workers.take(block=want is None), write_anyway=bool(sent))
        second = Step()
        if reports or sent:
            now = self.clock()

            def finish(tx: Tx) -> Step:
                if sent:
                    tx.outbox_mark_sent_events(sent)
                step, outputs = self.steps.write_results(tx, reports, now)
                if outputs:
                    step += self.steps.record(tx, outputs, now, self.owner)
                    self.own.remember(outputs)
                return step

            second = self._transact(now, finish)
        # 5. after its commit: start the runs it claimed, hand the turn's outbox to the bus
        launched += self._start(second.start)
        turn = first + second
        self.outbox.publish(turn.publish, started=launched > 0)
        stats.add(turn.stats)
        stats.launched, stats.published = stats.launched + launched, stats.published + len(sent)
        return stats, bool((batch is not None and len(batch)) or reports or launched or turn.publish)

    def _admitted(self, handed: list[Handed]) -> list[Handed]:
        """What the HTTP side handed over, but the requests with an event the spec refuses: those
        are answered with that refusal (a 422), as intake would dead-letter the event."""
        kept = []
        for h in handed:
            problem = next(filter(None, map(self.admission.problem, h.events)), None)
            if problem is None:
                kept.append(h)
            else:
                settle([h], problem)
        return kept

    def _record_and_claim(self, events: Sequence[CompletionEvent], handed: list[Handed], now: float) -> Step:
        """Step 2's transaction: the bus batch's events and those the HTTP side handed over (new
        ones into the outbox, for the bus: they come back as this coordinator's own), with their
        audit rows, then the due claims. A failure is told to the requests, which do it themselves."""
        incoming = [e for h in handed for e in h.events]

        def work(tx: Tx) -> Step:
            step = Step()
            if incoming:  # the audit rows first: on PostgreSQL they travel with the events' insert
                write_audits(tx, [row for h in handed for row in h.rows])
                step += self.steps.record(tx, incoming, now, self.owner, publish_new=True)
            if events:
                step += self.steps.record(tx, events, now, self.owner)
            if self.ha.draining or not self.claims.due(self.clock()):
                return step
            return step + self.steps.claim(tx, now, self.owner)

        try:
            step = self._transact(now, work)
        except BaseException as exc:
            settle(handed, exc)
            raise
        self.own.remember(e for e in step.publish if e.event_id in step.outboxed)
        return step

    def _poll(self, want: int, timeout: float) -> IntakeBatch | None:
        """The next batch; None when the bus is away (what was not committed comes back later)."""
        try:
            return self.intake.poll(want, timeout, self.own.skip)
        except BusError as exc:
            unless_fatal(exc, "polling again in 1 s")
            time.sleep(1.0)
            return None

    def _transact(self, now: float, work: Callable[[Tx], Step]) -> Step:
        """Run `work` in one transaction and put the events it decided to publish into the
        outbox in that same transaction, so an event exists exactly when its cause does. The
        step is acted on (runs started, events published) only after this returns, committed.
        A StoreError ends the loop: nothing is committed."""
        with self.store.begin() as tx:
            self.ha.hold(tx)  # the fence: LeaseLost, nothing written, once the lease was adopted
            step = work(tx)
            unwritten = [e for e in step.publish if e.event_id not in step.outboxed]
            if unwritten:
                tx.outbox_add(unwritten, now)
        return step

    def drain(self, grace_s: float) -> RunStats:
        """Stop starting runs; record those in flight as they end, for up to `grace_s` (on
        SIGTERM or Ctrl-C). What still runs then is left for adoption when the lease is released."""
        self.ha.draining = True
        self.handover.close("the coordinator is stopping")
        deadline = time.monotonic() + grace_s
        return self.run(consume=False, stop=lambda: not self.workers.busy or time.monotonic() >= deadline)

    def _start(self, runs: Sequence[RunRow]) -> int:
        if self.ha.draining:  # claimed while stopping: left for the next instance to launch
            return 0
        self.workers.start_many(runs)
        return len(runs)

    def _idle(self, check_bus: bool) -> bool:
        if self.workers.busy or self.outbox.publishing or self.outbox.holding or self.handover:
            return False
        if check_bus and not self.intake.caught_up():  # assigned and read to the end, not "lag 0"
            return False
        with self.store.begin() as tx:
            return tx.count_runs(OPEN) == 0 and tx.outbox_count() == 0

    def record_own(self, events: Sequence[CompletionEvent]) -> int:
        """Record events the coordinator makes itself besides run outputs (schedule ticks) in a
        transaction of their own, as a bus batch is, and publish through the outbox those new to
        the store: one another instance or an earlier life recorded is neither run on nor sent
        again (the event id is the store's unique key). How many were new."""
        if self.ha.draining:
            return 0
        now = self.clock()
        record = self.steps.record
        step = self._transact(now, lambda tx: record(tx, events, now, self.owner, publish_new=True))
        new = [e for e in step.publish if e.event_id in step.outboxed]  # not a blocked run's failed events
        self.own.remember(new)  # they come back off the bus: skipped, as run outputs are
        self._own_stats.add(step.stats)
        launched = self._start(step.start)
        self._own_stats.launched += launched
        if not self.outbox.dirty:  # else the turn's relay publishes them, with what it finds unsent
            self.outbox.publish(step.publish, started=launched > 0)
        return len(new)

    # ------------------------------------------------------------------ restart
    def _recover(self) -> int:
        """Re-attach to this instance's runs that were starting or running when it stopped, or
        launch them again (recovery.recover); how many were launched again."""
        with self.store.begin() as tx:
            active = tx.active_runs(self.owner)
        found = recover(active, self.spec, self.store, self.launcher, self._workdir, self.clock())
        for run, handle in found:
            self.workers.start(run, handle)
        return sum(handle is None for _, handle in found)


__all__ = ["Coordinator", "RunStats", "output_event_id"]
