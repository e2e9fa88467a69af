"""`coord publish --from-dbt` on real artifacts: a tiny dbt project (dbt-core + dbt-duckdb) is built
in a temp folder by `dbt build`, then its target/ is published and read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coordinator.cli import build_app
from coordinator.dbt import events_from_dbt, relation_to_dataset
from coordinator.errors import EventError
from coordinator.events import Status
from coordinator.settings import Settings
from tests.events.conftest import read_events

PROJECT = {
    "dbt_project.yml": "name: shop\nversion: '1.0'\nprofile: shop\nconfig-version: 2\n",
    "seeds/customers.csv": "id,name,country\n1,ada,uk\n2,linus,fi\n3,grace,us\n",
    "models/customer_stats.sql": "select id, name, upper(country) as country from {{ ref('customers') }}",
    "models/broken.sql": "select missing_column from {{ ref('customers') }}",
    "models/downstream_of_broken.sql": "select * from {{ ref('broken') }}",
    "models/schema.yml": (
        "version: 2\nmodels:\n  - name: customer_stats\n    config: {materialized: table}\n"
        "    columns:\n      - name: id\n        data_type: integer\n      - name: name\n"
        "        data_type: varchar\n      - name: country\n"),
    "snapshots/customers_snapshot.sql": (
        "{% snapshot customers_snapshot %}\n"
        "{{ config(target_schema='snapshots', unique_key='id', strategy='check', check_cols='all') }}\n"
        "select * from {{ ref('customers') }}\n{% endsnapshot %}\n"),
}


@pytest.fixture(scope="module")
def dbt_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """target/ of a real `dbt build`: a seed, a table model, a snapshot, an erroring model and
    one skipped because of it."""
    root = tmp_path_factory.mktemp("dbt")
    for name, text in PROJECT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: '{root / 'shop.duckdb'}'\n      threads: 1\n")
    dbt = Path(sys.executable).parent / "dbt"
    done = subprocess.run([str(dbt), "build", "--profiles-dir", str(root), "--project-dir", str(root),
                           "--no-use-colors", "--no-send-anonymous-usage-stats"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-3000:]  # one model errors on purpose
    assert "ERROR=1" in done.stdout and "SKIP=1" in done.stdout, done.stdout[-3000:]
    return root / "target"


def test_artifacts_are_recent_schema_versions(dbt_target: Path) -> None:
    run_results = json.loads((dbt_target / "run_results.json").read_text())
    manifest = json.loads((dbt_target / "manifest.json").read_text())
    assert run_results["metadata"]["dbt_schema_version"].endswith(("/v6.json", "/v7.json"))
    assert manifest["metadata"]["dbt_schema_version"].endswith(("/v12.json", "/v13.json"))


def test_one_event_per_built_node_and_one_failed_per_error(dbt_target: Path) -> None:
    events = {e.dataset: e for e in events_from_dbt(dbt_target, partition="2024-06-01")}
    assert set(events) == {"shop.main.customers", "shop.main.customer_stats", "shop.main.broken",
                           "shop.snapshots.customers_snapshot"}
    stats = events["shop.main.customer_stats"]
    assert stats.status is Status.SUCCEEDED and stats.partition == "2024-06-01" and stats.producer == "dbt"
    assert [(c.name, c.type) for c in stats.columns] == [("id", "integer"), ("name", "varchar"),
                                                         ("country", "unknown")]
    assert stats.attributes["dbt_unique_id"] == "model.shop.customer_stats"
    assert stats.attributes["dbt_materialized"] == "table"
    seed = events["shop.main.customers"]
    assert seed.status is Status.SUCCEEDED and seed.row_count == 3
    broken = events["shop.main.broken"]
    assert broken.status is Status.FAILED and "missing_column" in broken.error
    run_id = json.loads((dbt_target / "run_results.json").read_text())["metadata"]["invocation_id"]
    assert {e.producer_run_id for e in events.values()} == {run_id}
    assert events_from_dbt(dbt_target, partition="2024-06-01") == list(events.values())  # stable ids


def test_cli_publishes_a_dbt_run(dbt_target: Path, settings: Settings) -> None:
    result = CliRunner().invoke(build_app(), ["publish", "--from-dbt", str(dbt_target)])
    assert result.exit_code == 0, result.output
    events = read_events(settings, 4)
    assert sorted(e.event_id for e in events) == sorted(e.event_id for e in events_from_dbt(dbt_target))
    assert sum(e.status is Status.FAILED for e in events) == 1


def test_missing_artifacts_are_a_clear_error(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(EventError, match="run_results.json not found"):
        events_from_dbt(tmp_path)
    result = CliRunner().invoke(build_app(), ["publish", "--from-dbt", str(tmp_path)])
    assert result.exit_code == 1 and "not found" in result.output


def test_relation_names() -> None:
    assert relation_to_dataset('"db"."main"."orders"') == "db.main.orders"
    assert relation_to_dataset("`proj`.`ds`.`t`") == "proj.ds.t"
    assert relation_to_dataset("schema.table") == "schema.table"
