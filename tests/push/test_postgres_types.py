"""PostgreSQL column types through both write paths: the direct COPY and the staged CAST merge."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from coordinator.push import DestinationSettings, push

pytestmark = pytest.mark.postgres
UTC = dt.UTC


def rows(bump: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "small": pa.array([3 + bump, None], pa.int64()),
            "real_v": [0.5 + bump, None],
            "amount": pa.array([Decimal("12.34"), Decimal("-0.01")], pa.decimal128(10, 2)),
            "label": ["ünï", ""],
            "flag": [True, None],
            "day": pa.array([dt.date(2024, 5, 1), None]),
            "at": pa.array([dt.datetime(2024, 5, 1, 6, 30, tzinfo=UTC), None], pa.timestamp("us", "UTC")),
            "local_at": pa.array([dt.datetime(2024, 5, 1, 6, 30), None], pa.timestamp("us")),
            "doc": ['{"a": 1}', None],
        }
    )


@pytest.mark.parametrize("with_json", [False, True], ids=["direct-copy", "staged-cast"])
def test_types_round_trip_on_both_paths(postgres_url: str, tmp_path: Path, with_json: bool) -> None:
    """Without a jsonb column the first push COPYs straight into the empty table; a jsonb
    column has no binary COPY form from Arrow, so that push stages and CASTs."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS typed")
        conn.exec_driver_sql(
            "CREATE TABLE typed (id bigint PRIMARY KEY, small smallint, real_v real, amount numeric(10, 2), "
            "label varchar(5), flag boolean, day date, at timestamptz, local_at timestamp, doc jsonb)"
        )
        if not with_json:
            conn.exec_driver_sql("ALTER TABLE typed DROP COLUMN doc")
    dest = DestinationSettings(url=postgres_url, table="typed")
    for bump, expect_full in ((0, True), (1, False)):
        data = rows(bump) if with_json else rows(bump).drop_columns(["doc"])
        r = push(data, dest, job="types", key=["id"], state_dir=tmp_path / str(with_json))
        assert r.full is expect_full and r.inserted + r.updated == (2 if bump == 0 else 1)
        with engine.connect() as conn:
            got = [tuple(x) for x in conn.exec_driver_sql("SELECT * FROM typed ORDER BY id")]
        expected = [
            (1, 3 + bump, 0.5 + bump, Decimal("12.34"), "ünï", True, dt.date(2024, 5, 1),
             dt.datetime(2024, 5, 1, 6, 30, tzinfo=UTC), dt.datetime(2024, 5, 1, 6, 30), {"a": 1}),
            (2, None, None, Decimal("-0.01"), "", None, None, None, None, None),
        ]  # fmt: skip
        assert got == (expected if with_json else [e[:-1] for e in expected])
    engine.dispose()
