"""Sources: Parquet folders (with {partition}), SQL queries (SQLAlchemy; ADBC for PostgreSQL), Spark."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from coordinator.errors import PushError
from coordinator.push.config import PushSettings
from coordinator.push.run import resolve_source
from coordinator.push.sources import Source, read_table


def test_parquet_folder_by_partition(tmp_path: Path) -> None:
    folder = tmp_path / "scores" / "2024-05-01"
    folder.mkdir(parents=True)
    for i in range(3):
        pq.write_table(pa.table({"id": [i * 10 + j for j in range(10)]}), folder / f"part-{i}.parquet")
    settings = PushSettings.model_validate(
        {
            "source": {"parquet": str(tmp_path / "scores" / "{partition}")},
            "destination": {"url": "sqlite:///x.db", "table": "t"},
            "key": ["id"],
        }
    )
    table = read_table(resolve_source(settings, "2024-05-01", None))
    assert sorted(table.column("id").to_pylist()) == list(range(30))
    with pytest.raises(PushError, match="cannot read parquet"):
        read_table(resolve_source(settings, "2024-05-02", None))


def test_sql_source_through_sqlalchemy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    with sa.create_engine(url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE s (id INTEGER, name TEXT)")
        conn.exec_driver_sql("INSERT INTO s VALUES (1, 'a'), (2, NULL)")
    table = read_table(Source("sql", "SELECT id, name FROM s ORDER BY id", url=url))
    assert table.to_pylist() == [{"id": 1, "name": "a"}, {"id": 2, "name": None}]
    with pytest.raises(PushError, match="source query failed"):
        read_table(Source("sql", "SELECT nope FROM s", url=url))


@pytest.mark.postgres
def test_sql_source_through_adbc(postgres_url: str) -> None:
    table = read_table(
        Source(
            "sql", "SELECT g AS id, g * 0.5::float8 AS half FROM generate_series(1, 1000) g", url=postgres_url
        )
    )
    assert table.num_rows == 1000 and table.column("id").type == pa.int32()
    assert table.slice(0, 1).to_pylist() == [{"id": 1, "half": 0.5}]


@pytest.mark.spark
def test_spark_query(spark) -> None:
    table = read_table(Source("spark", "SELECT id, id * 2 AS twice FROM range(5)"))
    assert table.to_pylist()[-1] == {"id": 4, "twice": 8}
