"""What starts the journey: the app's daily export, and the schedule's ticks for those days.

The app (the website's own database) writes one export a day — its users and that day's
events, Parquet files from `jobs.sample_data`, a pure function of the seed and the day — and
says so with one completion event of `app.export` from producer "app". Its event id is derived
from the content of what was written: exporting the same data twice gives the same event, which
the coordinator de-duplicates, so re-running the demo launches nothing new; changed data
(another seed, more users) gives a new event and the journey re-runs from the load on.

The load waits for the schedule's tick as well (at 06:00 for the day before). `coord serve`
fires ticks on the clock; the demo drives the days it exports without waiting for one: it
announces each day's tick itself, the very event the schedule fires for that day (the same
derived id, so a tick is one event whoever makes it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from coordinator import schedules as S
from coordinator.events import CompletionEvent

if TYPE_CHECKING:
    from coordinator.publish import Publisher
    from coordinator.spec import PipelineSpec

PRODUCER = "app"
DATASET = "app.export"
TABLES = ("users", "events")


def days_ending(end: date, count: int) -> list[date]:
    """The `count` consecutive days up to and including `end`, oldest first."""
    return [end - timedelta(days=back) for back in range(count - 1, -1, -1)]


@dataclass(frozen=True)
class DayExport:
    """One day of the app's export, and what its completion event says of it."""

    partition: str
    folder: Path  # holds users/date=D and events/date=D
    rows: dict[str, int]  # table → rows
    digest: str

    def event(self) -> CompletionEvent:
        return CompletionEvent(
            event_id=f"{DATASET}@{self.partition}#{self.digest[:24]}",
            dataset=DATASET,
            partition=self.partition,
            producer=PRODUCER,
            producer_run_id=f"export-{self.partition}-{self.digest[:8]}",
            row_count=sum(self.rows.values()),
            location=str(self.folder.resolve()),
            attributes={f"{table}_rows": str(n) for table, n in self.rows.items()},
        )


def describe(folder: Path, day: date) -> DayExport:
    """The export of `day` under `folder` as its event says it: rows per table from the Parquet
    footers, and a digest of the files' bytes."""
    import pyarrow.parquet as pq

    digest = hashlib.sha256()
    rows: dict[str, int] = {}
    for table in TABLES:
        rows[table] = 0
        for file in sorted((folder / table / f"date={day.isoformat()}").glob("*.parquet")):
            digest.update(file.read_bytes())
            rows[table] += pq.read_metadata(file).num_rows
    return DayExport(day.isoformat(), folder, rows, digest.hexdigest())


def export(folder: Path, days: Sequence[date], n_users: int, seed: int = 7) -> list[DayExport]:
    """Write the app's export of each day under `folder` and describe what was written."""
    from jobs.sample_data import write_day

    for day in days:
        write_day(folder, day, n_users=n_users, seed=seed)
    return [describe(folder, day) for day in days]


def tick_for(name: str, schedule: S.ScheduleSpec, day: date) -> CompletionEvent:
    """The tick of `schedule` that stands for `day`: its first scheduled instant on the local day
    its partition offset points from (the day after, for `-1d`). ValueError for a schedule whose
    ticks are not daily."""
    if schedule.partitioning != "daily":
        raise ValueError(f"schedule {name!r} does not tick for days (partition {schedule.partition})")
    offset = int(schedule.partition[:-1])
    local_day = day - timedelta(days=offset)
    start = datetime.combine(local_day, time.min, tzinfo=schedule.zone).astimezone(UTC)
    at = S.next_after(schedule, start - timedelta(microseconds=1))
    if S.partition_of(schedule, at) != day.isoformat():
        raise ValueError(f"schedule {name!r} has no tick on {local_day} that stands for {day}")
    return S.Tick(name, at, day.isoformat()).event()


def ticks(spec: PipelineSpec, days: Sequence[date]) -> list[CompletionEvent]:
    """Each schedule's tick for each day: what the schedules would have fired."""
    return [tick_for(name, schedule, day) for name, schedule in spec.schedules.items() for day in days]


def publish_all(publisher: Publisher, events: Sequence[CompletionEvent]) -> int:
    """Put the events on the bus and wait until they are durable."""
    count = publisher.publish_many(events)
    publisher.flush()
    return count
