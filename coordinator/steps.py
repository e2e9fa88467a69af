"""The steps of a loop turn that write: each works inside the turn's transaction and returns a
`Step` — the outbox events it queued and the runs it claimed, acted on once that transaction
has committed, and what it counted (turn.py). The engine's `_turn` calls them in its order:

- `record`: new events (deduplicated by id), the partition versions they make, readiness'
  candidates as runs — created claimed where their pool has room, else ready (the
  ClaimSchedule learns of those), blocked where their inputs break a contract;
- `claim`: due ready runs within their pools;
- `write_results`: what the workers reported — started handles, finished attempts as
  outcome.plan says, the output events of the runs that succeeded (which the engine records in
  the same transaction, so downstream runs are created with them).
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator import outcome, readiness
from coordinator.events import CompletionEvent
from coordinator.hooks import Hooks
from coordinator.launchers.base import RunResult
from coordinator.spec.models import PipelineSpec
from coordinator.store.store import RunRow, Tx
from coordinator.turn import ClaimSchedule, Step
from coordinator.workers import Done, Report, Started


class TurnSteps:
    """The steps over one spec; they tell the ClaimSchedule what they changed and the hooks
    what happened."""

    def __init__(self, spec: PipelineSpec, hooks: Hooks, claims: ClaimSchedule) -> None:
        self.spec, self.hooks, self.claims = spec, hooks, claims

    def record(
        self, tx: Tx, events: Sequence[CompletionEvent], now: float, owner: str, publish_new: bool = False
    ) -> Step:
        """Record events and create the runs they make ready (claimed at once where their pool
        has room); part of the caller's transaction. `publish_new`: the events new to the store
        go into the outbox too."""
        step = Step()
        fresh = tx.insert_events(events, now)
        if not fresh:
            return step
        if publish_new:  # into the outbox now: the write travels with the snapshot's statement
            tx.outbox_add(fresh, now)
            step.publish += fresh
            step.outboxed.update(e.event_id for e in fresh)
        snap = tx.load_snapshot(self.spec, fresh, lock_pools=True)  # for pool_room, below
        before = dict(snap.latest)
        candidates = readiness.step(self.spec, snap, fresh)
        tx.save_versions([v for k, v in snap.latest.items() if before.get(k) != v], now)
        spec = self.spec
        pools = {spec.job_pools[c.job] for c in candidates if c.violation is None}
        room = {pool: tx.pool_room(pool, spec.pool_sizes[pool], now) for pool in pools}
        created = tx.insert_runs(
            candidates, spec.job_pools, spec.attempt_budgets, now, room=room, owner=owner
        )
        for run in created:
            if run.state == "blocked":
                self.blocked(step, run, run.error or "blocked")
            elif run.state == "starting":  # created claimed: its pool had room
                step.start.append(run)
            else:
                self.claims.ready_created()
        step.stats.runs_created += len(created)
        self.hooks.emit("after_ingest", fresh, created)
        return step

    def claim(self, tx: Tx, now: float, owner: str) -> Step:
        """Claim due ready runs within their pools for `owner` (see ClaimSchedule for when); a
        claimed run that may not start (its job left the spec, its inputs break the contract) is
        blocked."""
        step = Step()
        found = contended = False
        for pool, size in self.spec.pool_sizes.items():
            claimed = tx.claim(pool, size, owner, now, wait=False)
            if claimed is None:  # another instance is claiming from this pool: next turn
                contended = True
                continue
            found = found or bool(claimed)
            for run in claimed:
                reason = outcome.unlaunchable(self.spec, run)
                if reason:
                    tx.finish(run.run_id, run.attempt, "blocked", now, error=reason)
                    self.blocked(step, run, reason)
                else:
                    step.start.append(run)
        self.claims.looked(now, found, contended)
        return step

    def write_results(
        self, tx: Tx, reports: Sequence[Report], now: float
    ) -> tuple[Step, list[CompletionEvent]]:
        """Store started handles and finished attempts (outcome.plan); the step, and the output
        events of the runs that succeeded (in the step's outbox events; the caller records them)."""
        step = Step()
        dones = [r for r in reports if isinstance(r, Done)]
        handles = {(r.run.run_id, r.run.attempt): r.handle for r in reports if isinstance(r, Started)}
        plans = []
        for done in dones:
            run, result = done.run, done.result
            self.hooks.emit("after_finish", run, result)
            # an attempt that started and finished within one turn is written once, with its handle
            handle = handles.pop((run.run_id, run.attempt), None)
            plans.append((done, outcome.plan(self.spec.jobs.get(run.job), run, result, now, handle)))
        if handles:
            tx.set_running_many([(i, a, h) for (i, a), h in handles.items()], now)
        finished = tx.finish_many([f for _, f in plans], now) if plans else set()
        outputs: list[CompletionEvent] = []
        for done, plan in plans:
            run, result = done.run, done.result
            if run.run_id not in finished:  # a stale attempt: changed nothing
                continue
            if result.succeeded:
                step.stats.succeeded += 1
                outputs += outcome.output_events(self.spec, run, result, now)
            elif plan.state == "blocked":
                self.blocked(step, run, result.error or "blocked", result, now)
            elif plan.retry_at is not None:
                self.claims.retry_scheduled(plan.retry_at)
                step.stats.retried += 1
                self.hooks.emit("after_retry_scheduled", run, plan.retry_at - now, result.error)
            else:
                step.publish += outcome.failed_events(self.spec, run, result.error or "failed", result, now)
                step.stats.failed += 1
                self.hooks.emit("after_failed", run, result.error)
        step.publish += outputs
        if dones:
            self.claims.slots_freed()
        return step, outputs

    def blocked(
        self, step: Step, run: RunRow, reason: str, result: RunResult | None = None, now: float = 0.0
    ) -> None:
        """A run blocked: a failed event on each output (but those its result says ended otherwise),
        downstream held."""
        step.publish += outcome.failed_events(self.spec, run, reason, result, now)
        step.stats.blocked += 1
        self.hooks.emit("after_blocked", run, reason)
