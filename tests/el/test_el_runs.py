"""The el launcher on its own (real dlt, no engine): Parquet files laid out by partition, a
failed load's cause as one line, and settings refused when the spec loads."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from coordinator.errors import SpecError
from coordinator.kinds.el import ElSettings
from coordinator.launchers.base import RunResult
from coordinator.launchers.el import ElLauncher
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from tests.el.conftest import run_once


def run_el(settings: Settings, tmp_path: Path, job: dict, partition: str, outputs: list[str]) -> RunResult:
    return run_once(ElLauncher(settings), tmp_path / "runs" / partition, job, partition, outputs)


def duckdb_job(source: str, project: Path, path: str) -> dict:
    return {
        "source": source,
        "project_dir": str(project),
        "dataset_name": "raw",
        "destination": {"type": "duckdb", "path": path},
    }


def test_parquet_files_by_partition_and_their_location(project: Path, settings: Settings, tmp_path: Path):
    lake = tmp_path / "lake"
    job = {
        "source": "shop_source:shop",
        "project_dir": str(project),
        "dataset_name": "raw",
        "destination": {
            "type": "filesystem",
            "path": str(lake),
            "layout": "{table_name}/date={partition}/{load_id}.{file_id}.{ext}",
        },
        "tables": {"orders": "lake.orders"},
    }
    for day in ("2026-01-01", "2026-01-03"):
        result = run_el(settings, tmp_path, job, day, ["lake.orders"])
        assert result.succeeded, result.error
        [orders] = result.outputs
        assert orders.location == f"{lake}/raw/orders/date={day}"
        assert pq.read_table(orders.location).num_rows == orders.row_count
    assert pq.read_table(lake / "raw" / "orders" / "date=2026-01-01")["id"].to_pylist() == [1, 2]
    assert result.details["row_counts"] == {"orders": 1, "customers": 2}
    log = (tmp_path / "runs" / "2026-01-03" / "log").read_text()
    assert "table customers (2 row(s)) is not an output of job el_job: no event" in log


def test_an_extraction_failure_is_one_line_naming_the_cause(
    project: Path, settings: Settings, tmp_path: Path
):
    job = duckdb_job("shop_source:failing", project, str(tmp_path / "shop.duckdb"))
    result = run_el(settings, tmp_path, job, "2026-01-01", ["raw.orders"])
    assert not result.succeeded and "\n" not in result.error
    assert result.error.startswith("dlt extract failed: ResourceExtractionError:")
    assert "shop API answered 503 for 2026-01-01" in result.error


def test_a_failed_load_job_is_the_cause_and_the_next_run_starts_clean(
    project: Path, settings: Settings, tmp_path: Path
):
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:  # the destination refuses ids under 5
        con.execute(
            "create schema raw; create table raw.orders (id bigint check (id > 5), amount bigint, "
            "day text, loaded_for timestamp with time zone, _dlt_load_id text not null, "
            "_dlt_id text not null)"
        )
    job = duckdb_job("shop_source:shop", project, str(path))
    result = run_el(settings, tmp_path, job, "2026-01-01", ["raw.orders"])
    assert not result.succeeded and "\n" not in result.error
    assert result.error.startswith("dlt load of table orders failed (load package ")
    assert "CHECK constraint failed" in result.error
    with duckdb.connect(str(path)) as con:
        con.execute("drop schema raw cascade")  # the destination fixed
    # a new attempt has a working folder of its own: the failed package is not loaded again
    again = run_el(settings, tmp_path, job, "2026-01-03", ["raw.orders"])
    assert again.succeeded, again.error
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("select id from raw.orders").fetchall() == [(5,)]


def test_an_output_the_source_does_not_load_fails_the_run_naming_it(
    project: Path, settings: Settings, tmp_path: Path
):
    job = duckdb_job("shop_source:shop", project, str(tmp_path / "shop.duckdb"))
    result = run_el(settings, tmp_path, job, "2026-01-01", ["raw.orders", "raw.payments"])
    assert not result.succeeded
    assert result.error.startswith("outputs raw.payments are no table the source loaded")
    assert "orders → raw.orders" in result.error


SPEC = """
jobs:
  load:
    kind: el
    outputs: [raw.orders]
    settings:
      source: %s
      project_dir: %s
      dataset_name: raw
      destination: %s
"""


@pytest.mark.parametrize(
    ("source", "destination", "message"),
    [
        ("shop_source.shop", "{type: duckdb, path: a.duckdb}", "is not module:function"),
        ("nowhere:shop", "{type: duckdb, path: a.duckdb}", "source module 'nowhere' is neither in"),
        ("shop_source:shop", "{type: duckdb, path: lake/raw.duckdb}", "is named like dataset_name 'raw'"),
        ("shop_source:shop", "{type: duckdb, url: 'postgresql://x/y'}", "a duckdb destination needs `path`"),
        (
            "shop_source:shop",
            "{type: duckdb, path: a.duckdb, layout: x}",
            "'layout' has no meaning for a duckdb",
        ),
        ("shop_source:shop", "{type: postgres, url: 'mysql://x/y'}", "url starts with postgresql://"),
        ("shop_source:shop", "{type: s3, path: x}", "settings destination.type: Input should be 'duckdb'"),
        (
            "shop_source:shop\n      args: {partition: x}",
            "{type: duckdb, path: a.duckdb}",
            "args partition are given by the coordinator for each run",
        ),
    ],
)
def test_settings_are_checked_when_the_spec_loads(project: Path, source: str, destination: str, message: str):
    with pytest.raises(SpecError) as caught:
        parse_spec(SPEC % (source, project, destination))
    assert message in str(caught.value), str(caught.value)
    assert "<spec>:" in str(caught.value)


def test_valid_settings_resolve_against_the_spec_folder(project: Path):
    settings = ElSettings.model_validate(
        {
            "source": "shop_source:shop",
            "project_dir": ".",
            "dataset_name": "raw",
            "destination": {"type": "duckdb", "path": "lake/shop.duckdb"},
        },
        context={"spec_dir": str(project)},
    )
    assert settings.project() == project.resolve()
    assert settings.resolved("lake/shop.duckdb") == str(project.resolve() / "lake" / "shop.duckdb")
    assert settings.dataset_of("orders") == "raw.orders"
