"""Retention: old history leaves the store in bounded slices, what is live never does.

What a slice may delete, and what it never touches:
- a finished run (succeeded, failed, blocked, cancelled) that finished before the runs' cutoff
  and is superseded: a newer run of its (job, partition) exists, a newer live (not failed,
  blocked or cancelled) one when it is live itself, a newer succeeded one when it succeeded, and
  none of its outputs is a current version. So the newest run of each job partition stays (what
  `coord status` shows), the newest live one (what readiness reads as consumed: pruning it would
  make readiness launch the partition again) and the producer of each current version; runs not
  finished are never candidates. Its attempts go with it (its current one is on its own row).
- an attempt of a kept run older than the attempts' cutoff, except the run's current attempt.
- an event recorded before the events' cutoff that is not a current version, not an input or an
  output of a kept run (the caller's `keep`, marked while the runs were walked: the lineage of
  what is live), and whose partition's version has not moved since the pass began (a run created
  meanwhile may have read it as the latest; the next pass decides).
Partition versions, the outbox, dead letters, leases and the audit are not touched here.

Slices walk a table by its primary key from a cursor (`after`), `limit` rows at a time, so each
is an index range scan of bounded size whatever the table's size; the caller (the engine's
periodic hook, `coord prune`: coordinator/retention.py) keeps the cursor and the pass's marks.
Each check is repeated in the DELETE itself, so a run revived or a version moved by another
instance between the look and the delete is not deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, bindparam, delete, exists, or_, select, text, tuple_

from coordinator.store import schema as S
from coordinator.store.rows import DEAD, in_states, input_ids
from coordinator.store.sql import Sql

FINISHED = ("succeeded", *DEAD)
# what a run's outputs are, by run: (dataset, event id) pairs of the events it would have produced
Outputs = Callable[[str, str, int], Iterable[tuple[str, str]]]


@dataclass
class RunSlice:
    last: str | None  # the cursor for the next slice (None: the table's end was reached)
    examined: int = 0
    runs: int = 0  # deleted
    attempts: int = 0  # deleted
    keep: set[str] = field(default_factory=set)  # event ids the kept runs read or produced


@dataclass
class EventSlice:
    last: str | None
    examined: int = 0
    events: int = 0  # deleted


class Retention:
    """The retention's part of a transaction (`Tx` is composed of its parts)."""

    conn: Connection
    sql: Sql

    def prune_runs_slice(
        self,
        after: str,
        limit: int,
        runs_before: float,
        attempts_before: float,
        outputs: Outputs,
    ) -> RunSlice:
        """Walk up to `limit` runs after `after` (by run id): delete the prunable ones with their
        attempts, trim old attempts of the others, and return what the kept ones read and made."""
        r = S.runs
        rows = self.sql.execute(
            "retention.runs",
            lambda: (
                select(
                    r.c.run_id,
                    r.c.job,
                    r.c.partition_key,
                    r.c.state,
                    r.c.attempt,
                    r.c.finished_at,
                    r.c.inputs,
                )
                .where(r.c.run_id > bindparam("after"))
                .order_by(r.c.run_id)
                .limit(bindparam("limit"))
            ),
            {"after": after, "limit": limit},
        ).fetchall()
        done = RunSlice(last=rows[-1][0] if len(rows) == limit else None, examined=len(rows))
        if not rows:
            return done
        finished = [row[0] for row in rows if row[3] in FINISHED]
        superseded = self._superseded(finished) if finished else set()
        producers = self._producers(
            [row for row in rows if row[0] in superseded and row[3] == "succeeded"], outputs
        )
        doomed, kept = [], []
        for run_id, job, _, _, attempt, finished_at, inputs in rows:
            lineage = run_id not in superseded or run_id in producers
            if not lineage and finished_at is not None and finished_at < runs_before:
                doomed.append(run_id)
                continue
            kept.append(run_id)
            if lineage:  # what is live was built on these: their events stay
                done.keep.update(input_ids(inputs))
                done.keep.update(event_id for _, event_id in outputs(run_id, job, attempt))
        if doomed:
            gone = [
                row[0]
                for row in self.sql.execute(
                    "retention.runs.delete",
                    lambda: (
                        delete(r)
                        .where(
                            self.sql.in_list(r.c.run_id, "ids"),
                            in_states(FINISHED),
                            r.c.finished_at < bindparam("before", type_=r.c.finished_at.type),
                        )
                        .returning(r.c.run_id)
                    ),
                    {"ids": doomed, "before": runs_before},
                ).fetchall()
            ]
            done.runs = len(gone)
            kept.extend(set(doomed) - set(gone))
            if gone:
                a = S.attempts
                stored = self.sql.execute(
                    "retention.attempts.of",
                    lambda: (
                        delete(a)
                        .where(self.sql.in_list(a.c.run_id, "ids"))
                        .returning(a.c.run_id, a.c.attempt)
                    ),
                    {"ids": gone},
                ).fetchall()
                # with each run its attempts: those stored and its current one, on its own row
                went = set(gone)
                current = {(row[0], row[4]) for row in rows if row[0] in went and row[4] >= 1}
                done.attempts += len({tuple(x) for x in stored} | current)
        if kept:
            done.attempts += self._trim_attempts(kept, attempts_before)
        return done

    def _superseded(self, run_ids: list[str]) -> set[str]:
        """Those of these (finished) runs that are not the newest, the newest live or the newest
        succeeded run of their job partition."""
        r, newer = S.runs, S.runs.alias("newer")
        later = and_(
            newer.c.job == r.c.job,
            newer.c.partition_key == r.c.partition_key,
            tuple_(newer.c.created_at, newer.c.run_id) > tuple_(r.c.created_at, r.c.run_id),
        )
        dead = ", ".join(f"'{s}'" for s in DEAD)  # literals: compiled once, plans use the states

        def build():
            return select(r.c.run_id).where(
                self.sql.in_list(r.c.run_id, "ids"),
                exists().where(later),
                or_(in_states(DEAD), exists().where(later, text(f"newer.state NOT IN ({dead})"))),
                or_(r.c.state != "succeeded", exists().where(later, text("newer.state = 'succeeded'"))),
            )

        return {row[0] for row in self.sql.execute("retention.superseded", build, {"ids": run_ids})}

    def _producers(self, rows: list, outputs: Outputs) -> set[str]:
        """Those of these succeeded runs an output of which is a current partition version."""
        made: dict[tuple[str, str], dict[str, str]] = {}  # (dataset, partition key) → event id → run
        for row in rows:
            for dataset, event_id in outputs(row[0], row[1], row[4]):
                made.setdefault((dataset, row[2]), {})[event_id] = row[0]
        if not made:
            return set()
        p = S.partitions
        current = self.sql.pairs(
            "retention.current",
            select(p.c.dataset, p.c.partition_key, p.c.event_id),
            p.c.dataset,
            p.c.partition_key,
            sorted(made),
        )
        return {made[(d, k)][event_id] for d, k, event_id in current if event_id in made[(d, k)]}

    def _trim_attempts(self, run_ids: list[str], before: float) -> int:
        """Delete the old attempts of these runs, except each run's current one."""
        a, r = S.attempts, S.runs
        current = select(r.c.attempt).where(r.c.run_id == a.c.run_id).scalar_subquery()
        return self.sql.execute(
            "retention.attempts.old",
            lambda: delete(a).where(
                self.sql.in_list(a.c.run_id, "ids"),
                a.c.finished_at < bindparam("before", type_=a.c.finished_at.type),
                a.c.attempt < current,
            ),
            {"ids": run_ids, "before": before},
        ).rowcount

    def prune_events_slice(
        self, after: str, limit: int, before: float, pass_started: float, keep: set[str]
    ) -> EventSlice:
        """Walk up to `limit` events after `after` (by event id) and delete those older than
        `before` that are neither kept (`keep`: the kept runs' inputs and outputs) nor a current
        version, at partitions whose version has not moved since `pass_started`."""
        e = S.events
        rows = self.sql.execute(
            "retention.events",
            lambda: (
                select(e.c.event_id, e.c.recorded_at)
                .where(e.c.event_id > bindparam("after"))
                .order_by(e.c.event_id)
                .limit(bindparam("limit"))
            ),
            {"after": after, "limit": limit},
        ).fetchall()
        done = EventSlice(last=rows[-1][0] if len(rows) == limit else None, examined=len(rows))
        doomed = [event_id for event_id, recorded_at in rows if recorded_at < before and event_id not in keep]
        if doomed:
            p = S.partitions
            live = exists().where(
                p.c.dataset == e.c.dataset,
                p.c.partition_key == e.c.partition_key,
                or_(
                    p.c.event_id == e.c.event_id,
                    p.c.updated_at >= bindparam("moved", type_=p.c.updated_at.type),
                ),
            )
            done.events = self.sql.execute(
                "retention.events.delete",
                lambda: delete(e).where(
                    self.sql.in_list(e.c.event_id, "ids"),
                    e.c.recorded_at < bindparam("before", type_=e.c.recorded_at.type),
                    ~live,
                ),
                {"ids": doomed, "before": before, "moved": pass_started},
            ).rowcount
        return done
