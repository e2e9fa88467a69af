"""The website app's daily export as a dlt source: what the `load_app` job (kind `el`) loads.

The app writes one export a day — its `users` table as of that day and the day's product
`events`, Parquet files under `<export_dir>/<table>/date=YYYY-MM-DD/` (the demo writes them from
jobs/sample_data.py). The source reads the partition's files as Arrow tables (dlt takes them
as they are, without normalising row by row) and adds `load_day`, the day the export is for.

Each table is merged on `load_day` with dlt's delete-insert strategy: a load replaces that day's
rows and keeps every other day's, so loading a changed export of a day again (a re-sync) leaves
no row of the old one behind, and loading the same one twice changes nothing.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dlt
import pyarrow as pa
import pyarrow.parquet as pq

TABLES = ("users", "events")


def export_table(export_dir: str | Path, table: str, day: str) -> pa.Table:
    """The export's `table` for `day`, with its `load_day` column; FileNotFoundError naming the
    folder when the app wrote none for that day."""
    folder = Path(export_dir) / table / f"date={day}"
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"the app's export has no {table} for {day} (nothing in {folder})")
    data = pa.concat_tables(pq.read_table(f) for f in files)
    day_column = pa.array([date.fromisoformat(day)] * data.num_rows, pa.date32())
    return data.append_column(pa.field("load_day", pa.date32(), nullable=False), day_column)


@dlt.source(name="app")
def app_export(partition: str, export_dir: str):
    """The app's export of day `partition` (YYYY-MM-DD): one resource per table."""

    def table(name: str):
        @dlt.resource(
            name=name,
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            merge_key="load_day",
        )
        def rows():
            yield export_table(export_dir, name, partition)

        return rows

    return [table(name) for name in TABLES]
