"""The dbt launcher on its own (dbt for real, no engine): outputs the selection does not build
block the run before dbt builds anything; a model that errors fails the run (retried, unlike a
failed test) while the independent model is still announced; and what the spec's checks say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.errors import SpecError
from coordinator.launchers.base import RunResult
from coordinator.launchers.dbt import DbtLauncher
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from tests.el.conftest import run_once


def run_dbt(settings: Settings, workdir: Path, job: dict, partition: str, outputs: list[str]) -> RunResult:
    return run_once(DbtLauncher(settings), workdir, job, partition, outputs)


def test_outputs_the_selection_does_not_build_block_before_anything_is_built(
    dbt_project: Path, settings: Settings, tmp_path: Path
) -> None:
    job = {"project_dir": str(dbt_project), "select": "customers", "exclude": ["stg_orders"]}
    result = run_dbt(settings, tmp_path / "run", job, "2026-01-01", ["shop.main.stg_orders"])
    assert not result.succeeded and result.details["blocked"] is True
    assert result.error == (
        "outputs shop.main.stg_orders are not nodes this job selects "
        "(--select customers --exclude stg_orders; it builds shop.main.customers)"
    )
    assert not (tmp_path / "run" / "target").exists()  # dbt built nothing


def test_a_model_error_fails_the_run_naming_it_and_the_rest_is_reported(
    dbt_project: Path, settings: Settings, tmp_path: Path
) -> None:
    job = {"project_dir": str(dbt_project), "vars": {"country": "uk"}}
    outputs = ["shop.main.stg_orders", "shop.main.order_totals", "shop.main.customers"]
    # a partition key the staging model's date filter cannot read: the model errors in the warehouse
    result = run_dbt(settings, tmp_path / "run", job, "day-one", outputs)
    assert not result.succeeded and result.details["blocked"] is False  # retried under the job's policy
    assert result.error.startswith("dbt build: model.shop.stg_orders: ") and "\n" not in result.error
    assert "day-one" in result.error and "not built: model.shop.order_totals" in result.error
    status = {o.dataset: (o.status, o.error) for o in result.outputs}
    assert status["shop.main.customers"] == ("succeeded", None)
    assert status["shop.main.stg_orders"][0] == "failed" and "day-one" in status["shop.main.stg_orders"][1]
    assert status["shop.main.order_totals"][0] == "skipped"
    assert result.details["errored"] == ["model.shop.stg_orders"]
    sent = json.loads((tmp_path / "run" / "target" / "run_results.json").read_text())["args"]["vars"]
    assert sent == {"country": "uk", "partition": "day-one", "window_start": None, "window_end": None}


SPEC = """
jobs:
  transform:
    kind: dbt
    outputs:
      - shop.main.stg_orders
      - reporting.customers
      - shop.main.nope
    settings:
      project_dir: "%s"
      datasets: {customers: reporting.customers}
"""


def test_the_spec_checks_outputs_against_the_projects_manifest(dbt_project: Path) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(SPEC % dbt_project)
    [problem] = caught.value.problems
    assert problem.line == 8 and "output 'shop.main.nope' is no model, seed or snapshot" in problem.message
    assert parse_spec((SPEC % dbt_project).replace("      - shop.main.nope\n", ""))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"vars": {"partition": "x"}}, "vars partition are set by the coordinator for each run"),
        ({"project_dir": "/"}, "project_dir '/' has no dbt_project.yml"),
        ({"command": "test"}, "settings command: Input should be 'build', 'run', 'seed' or 'snapshot'"),
    ],
)
def test_settings_refused_when_the_spec_loads(dbt_project: Path, settings: dict, message: str) -> None:
    block = json.dumps({"project_dir": str(dbt_project), **settings})
    with pytest.raises(SpecError) as caught:
        parse_spec(f"jobs:\n  t:\n    kind: dbt\n    settings: {block}\n")
    assert message in str(caught.value)
