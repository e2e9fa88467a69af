"""Sources: where the rows come from, always as Arrow record batches (never Python rows).

A Parquet file or folder (any filesystem pyarrow opens: local paths, file://, s3://, gs://…)
is scanned with pyarrow.dataset; a SQL query is fetched through ADBC for PostgreSQL and through
SQLAlchemy (in chunks) elsewhere; a Spark table or query is collected as Arrow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from coordinator.errors import PushError
from coordinator.push.destinations.failure import one_line

BATCH_ROWS = 128_000


@dataclass(frozen=True)
class Source:
    """What to read: `kind` is parquet | sql | spark; `target` the path/URI, query or table."""

    kind: str
    target: str
    url: str | None = None

    def describe(self) -> str:
        return f"{self.kind}:{self.target}"


def read_table(source: Source) -> pa.Table:
    """All of the source as one Arrow table (columnar memory, made of the scanned batches)."""
    batches = list(iter_batches(source))
    if not batches:
        raise PushError(f"source {source.describe()} returned no schema")
    return pa.Table.from_batches(batches)


def iter_batches(source: Source) -> Iterator[pa.RecordBatch]:
    readers = {"parquet": _parquet, "sql": _sql, "spark": _spark}
    try:
        reader = readers[source.kind]
    except KeyError:
        raise PushError(f"unknown source kind {source.kind!r}") from None
    yield from reader(source)


def _parquet(source: Source) -> Iterator[pa.RecordBatch]:
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(source.target, format="parquet")
        scanned = False
        for batch in dataset.to_batches(batch_size=BATCH_ROWS):
            scanned = True
            yield batch
        if not scanned:  # an empty dataset still has a schema
            yield pa.RecordBatch.from_pylist([], schema=dataset.schema)
    except (OSError, pa.ArrowException) as exc:
        raise source_error(source, exc) from exc


def _sql(source: Source) -> Iterator[pa.RecordBatch]:
    assert source.url is not None
    scheme = source.url.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("postgresql", "postgres"):
        yield from _sql_adbc(source)
        return
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(source.url)
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(sa.text(source.target))
            names = list(result.keys())
            got = False
            for rows in result.partitions(BATCH_ROWS):
                got = True
                yield pa.RecordBatch.from_arrays([pa.array(c) for c in zip(*rows, strict=True)], names=names)
            if not got:
                yield pa.RecordBatch.from_pydict({n: pa.array([], pa.null()) for n in names})
        engine.dispose()
    except sa.exc.SQLAlchemyError as exc:
        raise source_error(source, exc) from exc


def _sql_adbc(source: Source) -> Iterator[pa.RecordBatch]:
    import adbc_driver_postgresql.dbapi as pg_dbapi
    from sqlalchemy.engine import make_url

    try:
        url = make_url(source.url).set(drivername="postgresql").render_as_string(hide_password=False)
        with pg_dbapi.connect(url) as conn, conn.cursor() as cur:
            cur.execute(source.target)
            reader = cur.fetch_record_batch()
            yield from reader
    except (pg_dbapi.Error, ValueError) as exc:  # ValueError: make_url's, for a bad port
        raise source_error(source, exc) from exc


def _spark(source: Source) -> Iterator[pa.RecordBatch]:
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    try:
        spark = SparkSession.builder.getOrCreate()
        target = source.target.strip()
        df = spark.sql(target) if " " in target else spark.table(target)
        table = df.toArrow()
    except (PySparkException, Py4JError) as exc:  # e.g. AnalysisException: no such table
        raise source_error(source, exc) from exc
    yield from table.to_batches(max_chunksize=BATCH_ROWS)


def source_error(source: Source, exc: BaseException) -> PushError:
    """A reader's or driver's exception (pyarrow, SQLAlchemy, ADBC, Spark) as the push's own:
    one line, the driver's message when SQLAlchemy wraps one (without its SQL and its link)."""
    if isinstance(exc, FileNotFoundError):  # its message is the bare path
        return PushError(f"cannot read {source.kind} source {source.target}: no such file or folder")
    orig = getattr(exc, "orig", None)
    what = f"cannot read {source.kind} source {source.target}"
    what = "source query failed" if source.kind == "sql" else what
    return PushError(f"{what}: {one_line(orig or exc)}")
