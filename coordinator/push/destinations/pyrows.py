"""Arrow → Python tuples for the drivers without a bulk-load path (SQLite, PyMySQL).

Values are converted per column in Arrow first (timestamps to UTC-naive, booleans to ints,
decimals to strings where the database would lose them), then turned into tuples one record
batch at a time, so only one batch of Python objects exists at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from coordinator.push.schema import arrow_family

BATCH_ROWS = 20_000


def tuples(
    table: pa.Table,
    convert: Callable[[pa.ChunkedArray], pa.ChunkedArray] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[list[tuple]]:
    if convert is not None:
        table = pa.table([convert(c) for c in table.columns], names=table.column_names)
    for batch in table.to_batches(max_chunksize=batch_rows):
        columns = [c.to_pylist() for c in batch.columns]
        yield list(zip(*columns, strict=True))


def utc_naive(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps with a zone become UTC wall-clock values (what MySQL DATETIME stores)."""
    if pa.types.is_timestamp(col.type) and col.type.tz is not None:
        return pc.cast(col, pa.timestamp(col.type.unit))
    return col


def sqlite_value(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """SQLite has no date/time or decimal types: ISO strings and REALs, booleans as 0/1."""
    fam = arrow_family(col.type)
    if fam == "bool":
        return pc.cast(col, pa.int64())
    if fam in ("timestamp", "date", "time"):
        return pc.cast(utc_naive(col), pa.string())
    if fam == "decimal":
        return pc.cast(col, pa.float64())
    return col
