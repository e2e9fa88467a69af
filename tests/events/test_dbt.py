"""`coord publish --from-dbt` on real artifacts: a tiny dbt project (dbt-core + dbt-duckdb) is built
in a temp folder by `dbt build`, then its target/ is published and read back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coordinator.cli import build_app
from coordinator.dbt import events_from_dbt, read_dbt_run, relation_to_dataset
from coordinator.errors import EventError
from coordinator.events import Status, derived_event_id
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


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: '{root / 'shop.duckdb'}'\n      threads: 1\n")
    return root


def dbt(invocations: list[tuple[Path, str, list[str]]]) -> list[dict]:
    """Real dbt invocations (dbt-core with dbt-duckdb, offline), each (project folder, name, dbt
    arguments), in order, in one child process (tests/events/dbt_invocations.py): each one's exit
    code and output, and a copy of target/ as it left it (the next invocation rewrites it) under
    FOLDER/kept/NAME."""
    script = Path(__file__).with_name("dbt_invocations.py")
    request = json.dumps([(str(root), name, args) for root, name, args in invocations])
    done = subprocess.run([sys.executable, str(script), request], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def dbt_target(projects: dict[str, Path]) -> Path:
    """target/ of a real `dbt build`: a seed, a table model, a snapshot, an erroring model and
    one skipped because of it."""
    return projects["shop"] / "kept" / "build"


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


# --------------------------------------------------------------------------- invocations and gates
GATED = {
    "dbt_project.yml": "name: shop\nversion: '1.0'\nprofile: shop\nconfig-version: 2\n",
    "seeds/customers.csv": "id,name,country\n1,ada,uk\n2,linus,fi\n3,grace,us\n",
    "models/orders.sql": "select 1 as id, 1 as customer_id union all select 1, 2",  # id is not unique
    "models/orders_report.sql": "select count(*) as n from {{ ref('orders') }}",
    "models/customer_stats.sql": "select id, name, upper(country) as country from {{ ref('customers') }}",
    "models/schema.yml": (
        "version: 2\nmodels:\n  - name: orders\n    columns:\n      - name: id\n"
        "        data_tests: [unique, not_null]\n"
        "  - name: customer_stats\n    config: {materialized: table}\n    columns:\n"
        "      - name: id\n        data_type: integer\n        data_tests: [unique]\n"
        "      - name: nope\n        data_tests: [not_null]\n"),  # a column that is not there: test error
    "tests/assert_stats_small.sql": "select * from {{ ref('customer_stats') }} where id > 2",  # singular
}
INVOCATIONS = {  # name → dbt arguments, in the order they run on one project
    "build": ["build"], "ls": ["ls"], "retry": ["retry"], "run": ["run"], "test": ["test"],
    "compile": ["compile"], "docs": ["docs", "generate"], "seed": ["seed"],
    "show": ["show", "--select", "orders_report"], "empty": ["run", "--empty"],
    "sample": ["run", "--sample", "1 day"],
}


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both projects below built by their real invocations, in one child process (dbt's import
    once): the shop project's `dbt build`, then the gated project's INVOCATIONS. The folders."""
    shop = write_project(tmp_path_factory.mktemp("dbt"), PROJECT)
    gated = write_project(tmp_path_factory.mktemp("gated"), GATED)
    done = dbt([(shop, "build", ["build"]), *((gated, name, args) for name, args in INVOCATIONS.items())])
    build = done[0]
    assert build["returncode"] == 1, build["stdout"][-3000:]  # one model errors on purpose
    assert "ERROR=1" in build["stdout"] and "SKIP=1" in build["stdout"], build["stdout"][-3000:]
    for name, result in zip(INVOCATIONS, done[1:], strict=True):
        failing = name in ("build", "retry", "test")  # tests fail on purpose
        assert result["returncode"] == (1 if failing else 0), (name, result["stdout"][-3000:])
    return {"shop": shop, "gated": gated}


@pytest.fixture(scope="module")
def targets(projects: dict[str, Path]) -> dict[str, Path]:
    """target/ as each real invocation left it: `dbt build` with failing and erroring tests, then
    ls, retry (of what failed), run, test alone, compile, docs generate, seed (beside the catalog
    docs generate wrote), show, run --empty and run --sample."""
    return {name: projects["gated"] / "kept" / name for name in INVOCATIONS}


def test_a_build_with_failing_tests_announces_its_models_unless_held(targets: dict[str, Path]) -> None:
    plain = {e.dataset: e for e in read_dbt_run(targets["build"]).events}
    # orders_report is skipped by dbt itself (its parent's test failed): no event
    assert set(plain) == {"shop.main.customers", "shop.main.orders", "shop.main.customer_stats"}
    assert {e.status for e in plain.values()} == {Status.SUCCEEDED}

    held = read_dbt_run(targets["build"], partition="2024-06-01", hold_on_test_failure=True)
    events = {e.dataset: e for e in held.events}
    assert set(events) == set(plain) and held.nothing_built is None and held.notes == []
    assert events["shop.main.customers"].status is Status.SUCCEEDED
    orders = events["shop.main.orders"]
    assert orders.status is Status.FAILED and orders.partition == "2024-06-01"
    assert orders.error == ("held: dbt tests failed: unique_orders_id "
                            "(fail: Got 1 result, configured to fail if != 0)")
    assert orders.attributes["dbt_failed_tests"] == "unique_orders_id"
    stats = events["shop.main.customer_stats"]
    assert stats.status is Status.FAILED
    assert stats.attributes["dbt_failed_tests"] == "assert_stats_small, not_null_customer_stats_nope"
    assert "assert_stats_small (fail: Got 1 result" in stats.error  # a singular test, by depends_on
    assert "not_null_customer_stats_nope (error: " in stats.error  # an erroring test holds too
    assert [e.event_id for e in held.events] == [e.event_id for e in plain.values()]  # same ids either way


@pytest.mark.parametrize(("name", "command"), [
    ("compile", "compile"), ("docs", "docs generate"), ("show", "show"), ("test", "test"),
])
def test_invocations_that_build_nothing_announce_nothing_and_say_why(targets: dict[str, Path], name: str,
                                                                     command: str) -> None:
    run_results = json.loads((targets[name] / "run_results.json").read_text())
    assert {r["status"] for r in run_results["results"]} & {"success", "pass", "fail"}  # dbt lists nodes
    run = read_dbt_run(targets[name], hold_on_test_failure=True)
    assert run.events == [] and run.command == command
    why = f"dbt `{command}` artifacts in {targets[name]}: that command builds nothing"
    if name == "test":
        why += "; 3 test(s) failed or errored, with no model built to hold"
    assert run.nothing_built == why
    assert events_from_dbt(targets[name]) == []


def test_schema_only_and_sampled_runs_announce_nothing(targets: dict[str, Path]) -> None:
    run = read_dbt_run(targets["empty"])
    assert run.events == [] and "`run --empty`" in run.nothing_built and "schema only" in run.nothing_built
    sampled = read_dbt_run(targets["sample"])
    assert sampled.events == [] and "`run --sample`" in sampled.nothing_built


def test_run_and_seed_announce_what_they_built(targets: dict[str, Path]) -> None:
    run = read_dbt_run(targets["run"], hold_on_test_failure=True)
    assert sorted(e.dataset for e in run.events) == ["shop.main.customer_stats", "shop.main.orders",
                                                    "shop.main.orders_report"]
    assert {e.status for e in run.events} == {Status.SUCCEEDED}  # no test ran: nothing to hold
    assert run.notes == ["no tests ran in dbt `run`: nothing to hold (`dbt build` runs them)"]
    assert {e.attributes["dbt_command"] for e in run.events} == {"run"}
    [seed] = read_dbt_run(targets["seed"]).events
    assert (seed.dataset, seed.row_count) == ("shop.main.customers", 3)  # rows affected: the seed's rows


def test_a_catalog_from_another_invocation_is_not_used_for_types(targets: dict[str, Path]) -> None:
    seed_dir = targets["seed"]
    catalog = json.loads((seed_dir / "catalog.json").read_text())  # written by `dbt docs generate`
    run_results = json.loads((seed_dir / "run_results.json").read_text())
    assert catalog["metadata"]["invocation_id"] != run_results["metadata"]["invocation_id"]
    assert catalog["nodes"]["seed.shop.customers"]["columns"]  # it does describe the seed
    run = read_dbt_run(seed_dir)
    assert run.events[0].columns is None  # the seed declares no columns; the catalog's are not used
    theirs, ours = catalog["metadata"]["invocation_id"], run_results["metadata"]["invocation_id"]
    assert run.notes == [f"catalog.json is from dbt invocation {theirs}, not this run's {ours}: "
                         "column types come from the manifest only"]
    # the same catalog, had this invocation written it, gives the warehouse's types
    same = keep_copy(seed_dir, "same_invocation")
    catalog["metadata"]["invocation_id"] = run_results["metadata"]["invocation_id"]
    (same / "catalog.json").write_text(json.dumps(catalog))
    [seed] = read_dbt_run(same).events
    assert [(c.name, c.type) for c in seed.columns] == [("id", "INTEGER"), ("name", "VARCHAR"),
                                                        ("country", "VARCHAR")]


def test_a_retry_is_read_as_the_command_it_retries(targets: dict[str, Path]) -> None:
    run_results = json.loads((targets["retry"] / "run_results.json").read_text())
    assert run_results["args"]["invocation_command"].startswith("dbt retry")
    run = read_dbt_run(targets["retry"], hold_on_test_failure=True)
    assert run.command == "build" and run.events == []  # it re-ran the failed tests and skipped the rest
    assert [n.split(", which")[0] for n in run.notes] == ["tests failed on model.shop.customer_stats",
                                                         "tests failed on model.shop.orders"]
    assert all("which this invocation did not build: nothing held" in n for n in run.notes)


def test_a_manifest_a_later_command_rewrote_is_named(targets: dict[str, Path]) -> None:
    run = read_dbt_run(targets["ls"])  # `dbt ls` writes manifest.json, not run_results.json
    assert run.command == "build" and len(run.events) == 3
    assert len(run.notes) == 1 and "manifest.json is from dbt invocation" in run.notes[0]


def test_cli_says_why_nothing_was_published(targets: dict[str, Path], settings: Settings) -> None:
    result = CliRunner().invoke(build_app(), ["publish", "--from-dbt", str(targets["docs"])])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [
        f"nothing built: dbt `docs generate` artifacts in {targets['docs']}: that command builds nothing"]
    assert read_events(settings, 0) == []


def test_cli_holds_models_whose_tests_failed(targets: dict[str, Path], settings: Settings) -> None:
    result = CliRunner().invoke(build_app(), ["publish", "--from-dbt", str(targets["build"]), "-p",
                                              "2024-06-01", "--hold-on-test-failure"])
    assert result.exit_code == 0, result.output
    events = {e.dataset: e for e in read_events(settings, 3)}
    assert {d: e.status.value for d, e in events.items()} == {"shop.main.customers": "succeeded",
                                                              "shop.main.orders": "failed",
                                                              "shop.main.customer_stats": "failed"}
    assert "unique_orders_id" in events["shop.main.orders"].error
    warned = CliRunner().invoke(build_app(), ["publish", "--from-dbt", str(targets["seed"])])
    assert warned.exit_code == 0 and "warning: catalog.json is from dbt invocation" in warned.output


# --------------------------------------------------------------------------- bad artifacts
def keep_copy(target: Path, name: str) -> Path:
    copy = target.parent / f"{target.name}-{name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(target, copy)
    return copy


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("file", "breakage", "reason", "says"), [
    ("run_results.json", b"{not json", "undecodable", "run_results.json"),
    ("run_results.json", b"[]", "invalid", "a JSON object expected, got list"),
    ("run_results.json", lambda d: d.update(results={"a": 1}), "invalid", "'results' should be a list"),
    ("run_results.json", lambda d: d["results"].insert(1, "x"), "invalid", "results[1] is not a node"),
    ("run_results.json", lambda d: d["args"].pop("which"), "invalid", "does not say which dbt command"),
    ("run_results.json", lambda d: d.pop("args"), "invalid", "dbt 1.5 or later writes it"),
    ("manifest.json", None, "invalid", "manifest.json not found"),
    ("manifest.json", lambda d: d.update(nodes=[]), "invalid", "'nodes' should be a dict"),
    ("catalog.json", b"\x00garbage", "undecodable", "catalog.json"),
])
def test_broken_artifacts_are_a_clear_error(targets: dict[str, Path], file: str, breakage, reason: str,
                                            says: str, settings: Settings) -> None:
    broken = keep_copy(targets["build"], f"broken-{file}-{reason}-{says[:12]}".replace(" ", "_"))
    path = broken / file
    if breakage is None:
        path.unlink()
    elif callable(breakage):
        _edit(path, breakage)
    else:
        path.write_bytes(breakage)
    with pytest.raises(EventError) as raised:
        read_dbt_run(broken)
    assert raised.value.reason == reason and says in str(raised.value)
    result = CliRunner().invoke(build_app(), ["publish", "--from-dbt", str(broken)])
    assert result.exit_code == 1 and says in result.output
    assert read_events(settings, 0) == []


def test_results_for_nodes_the_manifest_lacks_are_named(targets: dict[str, Path]) -> None:
    odd = keep_copy(targets["build"], "unknown-node")
    _edit(odd / "manifest.json", lambda d: d["nodes"].pop("model.shop.orders"))
    run = read_dbt_run(odd)
    assert "shop.main.orders" not in {e.dataset for e in run.events} and len(run.events) == 2
    assert run.notes[-1] == "1 result(s) name nodes manifest.json does not have, left out: model.shop.orders"


def test_cli_refuses_options_that_do_not_go_together(targets: dict[str, Path], settings: Settings) -> None:
    app = build_app()
    with_id = CliRunner().invoke(app, ["publish", "--from-dbt", str(targets["build"]), "--event-id", "x"])
    assert with_id.exit_code == 2 and "--event-id" in with_id.output
    hold = CliRunner().invoke(app, ["publish", "shop.main.orders", "--hold-on-test-failure"])
    assert hold.exit_code == 2 and "only with --from-dbt" in hold.output
    assert read_events(settings, 0) == []


@pytest.mark.parametrize(("file", "change", "says"), [
    ("manifest.json", lambda d: next(n for n in d["nodes"].values() if n["name"] == "assert_stats_small")
     .update(depends_on=["model.shop.customer_stats"]), "not the artifacts dbt writes (AttributeError"),
    ("manifest.json", lambda d: d["nodes"]["model.shop.orders"].update(relation_name="x" * 600),
     "model.shop.orders: 1 validation error"),
    ("run_results.json", lambda d: d["results"][0].update(adapter_response=["rows"]),
     "not the artifacts dbt writes (AttributeError"),
])
def test_artifacts_of_another_shape_are_a_clear_error(targets: dict[str, Path], file: str, change,
                                                      says: str) -> None:
    odd = keep_copy(targets["build"], f"shape-{file}-{says[:9]}".replace(" ", "_"))
    _edit(odd / file, change)
    with pytest.raises(EventError) as raised:
        read_dbt_run(odd, hold_on_test_failure=True)
    assert raised.value.reason == "invalid" and says in str(raised.value), raised.value


def test_event_ids_stay_within_their_limit() -> None:
    assert derived_event_id("dbt", "inv", "model.shop.orders") == "dbt:inv:model.shop.orders"
    node = "model." + "x" * 300
    long = derived_event_id("dbt", "inv", node)
    assert len(long) <= 200 and long.startswith("dbt:") and long == derived_event_id("dbt", "inv", node)
    assert long != derived_event_id("dbt", "inv2", node)


def test_cli_checks_dbt_events_against_the_spec(targets: dict[str, Path], settings: Settings,
                                                tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("datasets:\n  shop.main.customers: {partitioning: daily}\n"
                    "  shop.main.orders: {partitioning: daily}\n")
    args = ["publish", "--from-dbt", str(targets["build"]), "--spec", str(spec)]
    unpartitioned = CliRunner().invoke(build_app(), args)
    assert unpartitioned.exit_code == 1
    assert "bad_partition: shop.main.customers: a daily dataset needs a partition key" in unpartitioned.output
    assert "unknown_dataset: no dataset 'shop.main.customer_stats'" in unpartitioned.output
    assert "nothing published: 3 of 3 event(s) refused" in unpartitioned.output
    assert read_events(settings, 0) == []
    partial = CliRunner().invoke(build_app(), [*args, "-p", "2024-06-01"])  # one still unknown: none sent
    assert partial.exit_code == 1 and "nothing published: 1 of 3 event(s) refused" in partial.output
    assert read_events(settings, 0) == []
