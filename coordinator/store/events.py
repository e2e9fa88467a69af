"""Completion events and partition versions, and the readiness snapshot fetched from them.

Events are recorded once by id (a replay records nothing); a partition's version moves only
forward (by produced_at, then event id), so two instances recording out of order agree.
`load_snapshot` fetches what readiness says `step` will read (readiness.scans_for_events,
reruns_for_events, needed_for_events): the store does not decide what to load, only how.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, bindparam, func, select, tuple_

from coordinator import readiness
from coordinator.events import CompletionEvent
from coordinator.readiness import Key, Snapshot, Version
from coordinator.spec.models import PipelineSpec
from coordinator.store import schema as S
from coordinator.store.rows import DEAD, columns_of, dumps, event_body, in_states, input_ids, pkey, unkey
from coordinator.store.runs import pool_lock
from coordinator.store.sql import Sql


class Events:
    """The events' and versions' part of a transaction (`Tx` is composed of its parts)."""

    conn: Connection
    sql: Sql
    _bodies: dict[str, str]  # event bodies encoded in this transaction (events table, outbox)

    def _body(self, event: CompletionEvent) -> str:
        """The whole event as the outbox keeps it (published from there), encoded once."""
        body = self._bodies.get(event.event_id)
        if body is None:
            # fields at their defaults left out (parsed back, they are the defaults): ~120 bytes
            # less per outbox entry
            body = self._bodies[event.event_id] = event.model_dump_json(exclude_defaults=True)
        return body

    def insert_events(self, events: Sequence[CompletionEvent], now: float) -> list[CompletionEvent]:
        """Record events; returns those not seen before (in order, first copy of each).

        On PostgreSQL one INSERT … ON CONFLICT DO NOTHING RETURNING says which were new (and is
        right under concurrency: of two instances recording one event, exactly one gets it)."""
        unique: dict[str, CompletionEvent] = {}
        for e in events:
            unique.setdefault(e.event_id, e)
        if not unique:
            return []
        rows = {row["event_id"]: row for row in self._event_rows(unique.values(), now)}
        new = self.sql.insert_new(S.events, "event_id", rows)
        return [e for e in unique.values() if e.event_id in new]

    def _event_rows(self, events: Iterable[CompletionEvent], now: float) -> list[dict]:
        body = event_body  # the rest of the event: rows.event_of reads it back with the columns
        return [
            {
                "event_id": e.event_id,
                "dataset": e.dataset,
                "partition_key": pkey(e.partition),
                "status": str(e.status),  # a StrEnum: its str is its value
                "produced_at": e.produced_at.timestamp(),
                "recorded_at": now,
                "body": body(e),
            }
            for e in events
        ]

    def count_events(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(S.events)).scalar() or 0)

    # ------------------------------------------------------------------ the readiness snapshot
    def load_snapshot(
        self,
        spec: PipelineSpec,
        events: Sequence[CompletionEvent],
        extra_jobs: Iterable[Key] = (),
        lock_pools: bool = False,
    ) -> Snapshot:
        """The recorded state that `readiness.step(spec, snapshot, events)` reads. `lock_pools`:
        the pools of the jobs it looks at are tried for their lock in its statement, as the runs
        these events make ready may be created claimed (`pool_room`): a round trip fewer."""
        snap = Snapshot()
        for dataset in readiness.scans_for_events(spec, events):
            self._load_versions(
                snap, self.sql.execute("versions.dataset", _dataset_versions, {"dataset": dataset})
            )
        ran = self._newest_ran(readiness.reruns_for_events(spec, events))
        parts, jobs = readiness.needed_for_events(spec, events, snap, [*extra_jobs, *ran])
        t, r = S.partitions, S.runs
        wanted = [(d, pkey(p)) for d, p in parts if (d, p) not in snap.latest]
        job_keys = [(j, pkey(p)) for j, p in jobs]
        # the queries as functions: built only when compiled (sql.py), not at every turn; the
        # runs in creation order: the last live run of a partition wins
        pools = {spec.job_pools[j] for j, _ in jobs if j in spec.job_pools} if lock_pools else ()
        versions, rows = self.sql.pairs_both(
            ("versions", _versions_query, t.c.dataset, t.c.partition_key, wanted, ()),
            ("consumed", _consumed_query, r.c.job, r.c.partition_key, job_keys, ("created_at", "run_id")),
            try_locks=[pool_lock(p) for p in pools],
        )
        self._load_versions(snap, versions)
        for job, partition_key, inputs, _, _ in rows:
            snap.consumed[(job, unkey(partition_key))] = frozenset(input_ids(inputs))
        return snap

    def _newest_ran(self, jobs: set[str]) -> list[Key]:
        """The newest partition with a live run of each job (what `on_change` inputs re-run)."""
        if not jobs:
            return []
        r = S.runs

        def build():
            return (
                select(r.c.job, func.max(r.c.partition_key))
                .where(
                    self.sql.in_list(r.c.job, "jobs"), in_states(DEAD, negate=True), r.c.partition_key != ""
                )
                .group_by(r.c.job)
            )

        return [(job, unkey(p)) for job, p in self.sql.execute("runs.newest", build, {"jobs": sorted(jobs)})]

    @staticmethod
    def _load_versions(snap: Snapshot, rows: Iterable) -> None:
        """Rows of `_version_columns()` into the snapshot."""
        latest = snap.latest
        for dataset, partition_key, event_id, produced_at, row_count, location, columns in rows:
            partition = unkey(partition_key)
            latest[(dataset, partition)] = Version(
                event_id, dataset, partition, produced_at, row_count, location, columns_of(columns)
            )

    # ------------------------------------------------------------------ partition versions
    def save_versions(self, versions: Iterable[Version], now: float) -> None:
        """Upsert each version where it is newer than the stored one (safe under concurrency)."""
        rows = [
            {
                "dataset": v.dataset,
                "partition_key": pkey(v.partition),
                "event_id": v.event_id,
                "produced_at": v.produced_at,
                "row_count": v.row_count,
                "location": v.location,
                "columns": None if v.columns is None else dumps([c.model_dump() for c in v.columns]),
                "updated_at": now,
            }
            for v in versions
        ]
        if not rows:
            return
        t = S.partitions

        def newer(stmt):
            ex = stmt.excluded
            return stmt.on_conflict_do_update(
                index_elements=[t.c.dataset, t.c.partition_key],
                set_={
                    c: ex[c]
                    for c in ("event_id", "produced_at", "row_count", "location", "columns", "updated_at")
                },
                where=tuple_(t.c.produced_at, t.c.event_id) < tuple_(ex.produced_at, ex.event_id),
            )

        self.sql.write(t, rows, newer)

    def latest_versions(self, dataset: str | None = None) -> list[Version]:
        t = S.partitions
        q = select(t).order_by(t.c.dataset, t.c.partition_key)
        if dataset:
            q = q.where(t.c.dataset == dataset)
        return [
            Version(m.event_id, m.dataset, unkey(m.partition_key), m.produced_at, m.row_count, m.location)
            for m in self.conn.execute(q)
        ]


def _version_columns():
    """What a partition version is read as (Events._load_versions)."""
    c = S.partitions.c
    return (c.dataset, c.partition_key, c.event_id, c.produced_at, c.row_count, c.location, c.columns)


def _versions_query():
    return select(*_version_columns())


def _consumed_query():
    """What a job partition's live runs consumed (readiness' `consumed`)."""
    r = S.runs
    columns = (r.c.job, r.c.partition_key, r.c.inputs, r.c.created_at, r.c.run_id)
    return select(*columns).where(in_states(DEAD, negate=True))


def _dataset_versions():
    return select(*_version_columns()).where(S.partitions.c.dataset == bindparam("dataset"))
