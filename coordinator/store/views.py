"""The read side the views ask for: lineage and history, the UI's graph and grid, the metrics.

Off the loop's hot path (a page, a scrape, a `coord show`), so plain SQLAlchemy Core on the
transaction's connection. Callers outside the store get rows as `CompletionEvent`, `RunRow`
and `Version`, never tables or connections.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, and_, case, exists, func, select

from coordinator.events import CompletionEvent
from coordinator.readiness import Version
from coordinator.store import schema as S
from coordinator.store.rows import (
    ACTIVE,
    DEAD,
    EVENT_COLUMNS,
    RunRow,
    event_of,
    in_states,
    loads,
    pkey,
    unkey,
    version_of,
)


class Views:
    """The views' part of a transaction (`Tx` is composed of its parts)."""

    conn: Connection

    # ------------------------------------------------------------------ events
    def get_event(self, event_id: str) -> CompletionEvent | None:
        e = S.events
        row = self.conn.execute(select(*_event_columns()).where(e.c.event_id == event_id)).first()
        return event_of(row) if row else None

    def events_at(self, datasets: Sequence[str], partition: str | None) -> list[CompletionEvent]:
        """The recorded events of `datasets` at `partition`, oldest recorded first."""
        e = S.events
        q = (
            select(*_event_columns())
            .where(e.c.dataset.in_(datasets), e.c.partition_key == pkey(partition))
            .order_by(e.c.recorded_at)
        )
        return [event_of(row) for row in self.conn.execute(q)]

    def newest_event(
        self, dataset: str, partition: str | None, status: str | None = None
    ) -> CompletionEvent | None:
        """The last recorded event of a dataset partition (of that `status`, if given)."""
        e = S.events
        q = select(*_event_columns()).where(e.c.dataset == dataset, e.c.partition_key == pkey(partition))
        if status is not None:
            q = q.where(e.c.status == status)
        row = self.conn.execute(q.order_by(e.c.recorded_at.desc()).limit(1)).first()
        return event_of(row) if row else None

    def produced_times(self, dataset_prefix: str) -> dict[str, float]:
        """When each recorded event of the datasets whose names start with `dataset_prefix` was
        produced, by event id."""
        e = S.events
        named = e.c.dataset.startswith(dataset_prefix, autoescape=True)
        q = select(e.c.event_id, e.c.produced_at).where(named)
        return dict(self.conn.execute(q).all())

    def version_event_id(self, dataset: str, partition: str | None) -> str | None:
        """The event id of the recorded latest complete version of a dataset partition."""
        p = S.partitions
        q = select(p.c.event_id).where(p.c.dataset == dataset, p.c.partition_key == pkey(partition))
        return self.conn.execute(q).scalar()

    def versions_at(self, partitions: Sequence[str | None]) -> list[Version]:
        """The latest versions of every dataset at these partitions (None: unpartitioned)."""
        t = S.partitions
        keys = sorted({pkey(p) for p in partitions})
        return [
            Version(m.event_id, m.dataset, unkey(m.partition_key), m.produced_at, m.row_count, m.location)
            for m in self.conn.execute(select(t).where(t.c.partition_key.in_(keys)))
        ]

    def partition_keys(self) -> set[str]:
        """Every partition key a version or a run was recorded at."""
        p, r = S.partitions, S.runs
        found = set(self.conn.execute(select(p.c.partition_key).distinct()).scalars())
        found |= set(self.conn.execute(select(r.c.partition_key).distinct()).scalars())
        return {k for k in found if k}

    def newest_produced(self, datasets: Sequence[str], id_prefix: str = "") -> dict[str, float]:
        """The latest `produced_at` recorded of each of `datasets`, of the events whose id starts
        with `id_prefix` (a schedule's last tick, not a tick published by hand)."""
        e = S.events
        q = (
            select(e.c.dataset, func.max(e.c.produced_at))
            .where(e.c.dataset.in_(datasets), e.c.event_id.startswith(id_prefix, autoescape=True))
            .group_by(e.c.dataset)
        )
        return {dataset: at for dataset, at in self.conn.execute(q) if at is not None}

    def version_history(self, dataset: str, partition: str | None) -> list[tuple[float, str]]:
        """(produced_at, event_id) of every succeeded event of a dataset partition, oldest first:
        its versions, numbered 1, 2, ... by the views."""
        e = S.events
        q = (
            select(e.c.produced_at, e.c.event_id)
            .where(e.c.dataset == dataset, e.c.partition_key == pkey(partition), e.c.status == "succeeded")
            .order_by(e.c.produced_at, e.c.event_id)
        )
        return [(at, eid) for at, eid in self.conn.execute(q)]

    # ------------------------------------------------------------------ runs
    def consumed_inputs(self) -> dict[tuple[str, str | None], tuple[Version, ...]]:
        """The input versions of the last live (not failed, blocked or cancelled) run of every
        job partition — what it is built on."""
        r = S.runs
        q = (
            select(r.c.job, r.c.partition_key, r.c.inputs)
            .where(in_states(DEAD, negate=True))
            .order_by(r.c.created_at, r.c.run_id)
        )
        return {
            (job, unkey(key)): tuple(version_of(d) for d in loads(inputs))
            for job, key, inputs in self.conn.execute(q)
        }

    def runs_reading(self, jobs: Sequence[str], event_id: str) -> list[RunRow]:
        """Runs of `jobs` whose stored inputs mention `event_id` (a text match: the caller checks
        the decoded inputs), oldest first."""
        r = S.runs
        q = (
            select(r)
            .where(r.c.job.in_(jobs), r.c.inputs.contains(event_id))
            .order_by(r.c.created_at, r.c.run_id)
        )
        return [RunRow.of(row) for row in self.conn.execute(q)]

    def runs_at(self, partitions: Sequence[str | None]) -> list[RunRow]:
        """Every run at these partitions (None: unpartitioned), oldest first."""
        r = S.runs
        keys = sorted({pkey(p) for p in partitions})
        q = select(r).where(r.c.partition_key.in_(keys)).order_by(r.c.created_at, r.c.run_id)
        return [RunRow.of(row) for row in self.conn.execute(q)]

    def runs_ended(self, states: Sequence[str], since: float) -> list[RunRow]:
        """Runs in `states` that finished at or after `since`, in the order they finished."""
        r = S.runs
        q = select(r).where(r.c.state.in_(states), r.c.finished_at >= since).order_by(r.c.finished_at)
        return [RunRow.of(row) for row in self.conn.execute(q)]

    def run_counts(self) -> list[tuple[str, str, int]]:
        """(job, state, runs) for every job and state that has runs; a failed, blocked or
        cancelled run that a newer run of its job partition superseded counts as `superseded`:
        the gauges count each partition's newest run, so a blocked count falls back once the
        partition runs again (and stays while its newest run is blocked too)."""
        r = S.runs
        shown = case((and_(in_states(DEAD), _newer_run(r)), "superseded"), else_=r.c.state)
        q = select(r.c.job, shown, func.count()).group_by(r.c.job, shown)
        return [(job, state, n) for job, state, n in self.conn.execute(q)]

    def runs_page(
        self,
        *,
        job: str | None = None,
        states: Sequence[str] | None = None,
        partition_from: str | None = None,
        partition_to: str | None = None,
        since: float | None = None,
        until: float | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[RunRow], int]:
        """One page of the runs list, newest created first, and how many runs match in all.
        Partitions compare as text (ISO keys sort by time), `since`/`until` bound created_at."""
        r = S.runs
        where = []
        if job:
            where.append(r.c.job == job)
        if states:
            where.append(r.c.state.in_(states))
        if partition_from is not None:
            where.append(r.c.partition_key >= partition_from)
        if partition_to is not None:
            where.append(r.c.partition_key <= partition_to)
            if partition_from is None and partition_to:  # a range of partitions: not the unpartitioned
                where.append(r.c.partition_key != "")
        if since is not None:
            where.append(r.c.created_at >= since)
        if until is not None:
            where.append(r.c.created_at < until)
        total = self.conn.execute(select(func.count()).select_from(r).where(*where)).scalar() or 0
        q = select(r).where(*where).order_by(r.c.created_at.desc(), r.c.run_id).offset(offset).limit(limit)
        return [RunRow.of(row) for row in self.conn.execute(q)], int(total)

    def superseding(self, runs: Sequence[RunRow]) -> dict[str, str]:
        """For each failed, blocked or cancelled run among `runs`, the id of the newest run of its
        job partition created after it (the run that superseded it)."""
        dead = [run for run in runs if run.state in DEAD]
        if not dead:
            return {}
        r = S.runs
        q = (
            select(r.c.run_id, r.c.job, r.c.partition_key, r.c.created_at)
            .where(
                r.c.job.in_(sorted({run.job for run in dead})),
                r.c.partition_key.in_(sorted({pkey(run.partition) for run in dead})),
            )
            .order_by(r.c.created_at)
        )
        newest: dict[tuple[str, str], tuple[float, str]] = {}
        for run_id, job, key, created in self.conn.execute(q):
            newest[(job, key)] = (created, run_id)
        out = {}
        for run in dead:
            found = newest.get((run.job, pkey(run.partition)))
            if found and found[0] > run.created_at:
                out[run.run_id] = found[1]
        return out

    def newest_versions(self) -> dict[str, float]:
        """The newest `produced_at` among each dataset's latest partition versions (freshness)."""
        t = S.partitions
        q = select(t.c.dataset, func.max(t.c.produced_at)).group_by(t.c.dataset)
        return {dataset: at for dataset, at in self.conn.execute(q) if at is not None}

    def oldest_active(self) -> dict[str, float]:
        """When the oldest starting or running run of each job started (a stranded run ages)."""
        r = S.runs
        q = select(r.c.job, func.min(func.coalesce(r.c.started_at, r.c.created_at))).where(in_states(ACTIVE))
        return {job: at for job, at in self.conn.execute(q.group_by(r.c.job)) if at is not None}

    def pool_usage(self) -> dict[str, int]:
        """Starting or running runs by pool (the slots each pool has in use)."""
        r = S.runs
        q = select(r.c.pool, func.count()).where(in_states(ACTIVE)).group_by(r.c.pool)
        return {pool: n for pool, n in self.conn.execute(q)}


def _event_columns():
    """What an event is read from (rows.event_of)."""
    return tuple(S.events.c[name] for name in EVENT_COLUMNS)


def _newer_run(r):
    """EXISTS a run of r's job partition created after r."""
    newer = S.runs.alias("newer")
    return exists().where(
        newer.c.job == r.c.job,
        newer.c.partition_key == r.c.partition_key,
        newer.c.created_at > r.c.created_at,
    )
