"""Land raw EL tables as an EL tool would: Parquet day folders, then one completion event each.

The data comes from `jobs.sample_data` (users and events of a website, a pure function of the
seed and the day). Each landed table becomes a `CompletionEvent` from producer "fivetran" whose
event id is derived from the content of what was written: landing the same data twice gives
the same event, which the coordinator de-duplicates, so re-running the demo launches nothing
new; changed data (another seed, more users) gives a new event and the journey re-runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from coordinator.events import Column, CompletionEvent

if TYPE_CHECKING:
    from coordinator.publish import Publisher

PRODUCER = "fivetran"
CONNECTOR = "app"
TABLES = ("users", "events")


def dataset_name(table: str) -> str:
    """`users` → `fivetran.app.users`: the EL tool's name for a table of the app connector."""
    return f"{PRODUCER}.{CONNECTOR}.{table}"


def days_ending(end: date, count: int) -> list[date]:
    """The `count` consecutive days up to and including `end`, oldest first."""
    return [end - timedelta(days=back) for back in range(count - 1, -1, -1)]


@dataclass(frozen=True)
class LandedTable:
    """One table partition written to the lake, and what its completion event says of it."""

    dataset: str
    partition: str
    location: Path
    row_count: int
    columns: tuple[Column, ...]
    digest: str

    def event(self) -> CompletionEvent:
        return CompletionEvent(
            event_id=f"{self.dataset}@{self.partition}#{self.digest[:24]}",
            dataset=self.dataset,
            partition=self.partition,
            producer=PRODUCER,
            producer_run_id=f"sync-{self.partition}-{self.digest[:8]}",
            row_count=self.row_count,
            location=str(self.location.resolve()),
            columns=self.columns,
            attributes={"connector": CONNECTOR, "table": self.dataset.rsplit(".", 1)[-1]},
        )


def _describe(folder: Path) -> tuple[int, tuple[Column, ...], str]:
    """Row count and columns from the Parquet footers, and a digest of the files' bytes."""
    import pyarrow.parquet as pq

    digest = hashlib.sha256()
    rows = 0
    schema = None
    for file in sorted(folder.glob("*.parquet")):
        digest.update(file.read_bytes())
        meta = pq.read_metadata(file)
        rows += meta.num_rows
        schema = schema or meta.schema.to_arrow_schema()
    columns = tuple(Column(name=f.name, type=str(f.type), nullable=f.nullable) for f in schema or ())
    return rows, columns, digest.hexdigest()


def land(lake: Path, days: Sequence[date], n_users: int, seed: int = 7) -> list[LandedTable]:
    """Write users and events for each day under `lake/raw/` and describe what was written."""
    from jobs.sample_data import write_raw_day

    landed: list[LandedTable] = []
    for day in days:
        folders = write_raw_day(lake, day, n_users=n_users, seed=seed)
        for table in TABLES:
            rows, columns, digest = _describe(Path(folders[table]))
            landed.append(
                LandedTable(dataset_name(table), day.isoformat(), Path(folders[table]), rows, columns, digest)
            )
    return landed


def publish_landed(publisher: Publisher, landed: Sequence[LandedTable]) -> int:
    """Put one completion event per landed table on the bus and wait until it is durable."""
    count = publisher.publish_many(t.event() for t in landed)
    publisher.flush()
    return count
