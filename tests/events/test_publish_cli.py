"""`coord publish` and the `coordinator.publish(...)` SDK call put valid events on the bus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coordinator.cli import build_app
from coordinator.engine import Coordinator
from coordinator.events import Column, Status
from coordinator.settings import Settings
from coordinator.spec import load_spec
from tests.events.conftest import read_events


def test_cli_publishes_an_event_with_every_option(settings: Settings, tmp_path: Path) -> None:
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps([{"name": "user_id", "type": "bigint", "nullable": False},
                                   {"name": "email", "type": "string"}]))
    result = CliRunner().invoke(build_app(), [
        "publish", "fivetran.app.users", "--partition", "2024-06-01", "--rows", "42",
        "--location", "s3://lake/users/dt=2024-06-01", "--columns-from", str(columns),
        "--attr", "team=growth", "--attr", "note=a=b"])
    assert result.exit_code == 0, result.output
    [event] = read_events(settings, 1)
    assert result.output.split("\t")[0] == event.event_id
    assert (event.dataset, event.partition, event.row_count, event.status) == (
        "fivetran.app.users", "2024-06-01", 42, Status.SUCCEEDED)
    assert event.location == "s3://lake/users/dt=2024-06-01" and event.producer == "cli"
    assert event.columns == (Column(name="user_id", type="bigint", nullable=False),
                             Column(name="email", type="string"))
    assert event.attributes == {"team": "growth", "note": "a=b"}


def test_cli_failed_status_and_yaml_columns(settings: Settings, tmp_path: Path) -> None:
    columns = tmp_path / "columns.yaml"
    columns.write_text("id: int\nname: string\n")
    result = CliRunner().invoke(build_app(), ["publish", "spark.daily", "-p", "2024-06-02", "--status",
                                              "failed", "--error", "OOM", "--columns-from", str(columns)])
    assert result.exit_code == 0, result.output
    [event] = read_events(settings, 1)
    assert event.status is Status.FAILED and event.error == "OOM"
    assert [c.name for c in event.columns] == ["id", "name"]


def test_cli_refuses_bad_input_with_a_reason(settings: Settings) -> None:
    app = build_app()
    empty = CliRunner().invoke(app, ["publish", ""])
    assert empty.exit_code == 1 and "invalid" in empty.output
    negative = CliRunner().invoke(app, ["publish", "x", "--rows", "-3"])
    assert negative.exit_code == 1 and "row_count" in negative.output
    bad_attr = CliRunner().invoke(app, ["publish", "x", "--attr", "novalue"])
    assert bad_attr.exit_code == 2
    neither = CliRunner().invoke(app, ["publish"])
    assert neither.exit_code == 2
    assert read_events(settings, 0) == []


@pytest.mark.parametrize("content", [b"id: \xff\xfe\n", b"x: " + b"[" * 5000], ids=["not UTF-8", "nested"])
def test_a_columns_file_it_cannot_read_is_refused_in_one_line(settings: Settings, tmp_path: Path,
                                                              content: bytes) -> None:
    columns = tmp_path / "columns.yaml"
    columns.write_bytes(content)
    result = CliRunner().invoke(build_app(), ["publish", "x", "--columns-from", str(columns)])
    assert result.exit_code == 2 and "cannot read" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert read_events(settings, 0) == []


def test_sdk_publish_from_the_package(settings: Settings) -> None:
    import coordinator
    from coordinator import publish

    event = publish("spark.features", "2024-06-01", row_count=7, columns=[Column(name="a", type="int")],
                    attributes={"job": "features"}, settings=settings)
    again = coordinator.publish("spark.features", "2024-06-02", status="failed", error="boom")
    assert publish is coordinator.publish
    got = read_events(settings, 2)
    assert got[0] == event and got[0].producer == "sdk"
    assert got[1] == again and again.status is Status.FAILED


def test_publisher_is_reachable_as_a_module() -> None:
    import coordinator.publish as module
    from coordinator.publish import Publisher

    assert module.Publisher is Publisher and callable(module)


SPEC = """
accept_unknown_datasets: false
datasets:
  fivetran.app.users: {partitioning: daily}
  web.clicks: {partitioning: hourly}
  ref.countries: {}
  sales.by_region: {partitioning: {static: [eu, us]}}
jobs:
  features:
    kind: command
    inputs: [fivetran.app.users]
    outputs: [features.daily]
    settings: {command: [sh, -c, 'echo {partition} >> LOG']}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(SPEC.replace("LOG", str(tmp_path / "ran.log")))
    return path


@pytest.mark.parametrize(("args", "says"), [
    (["fivetran.app.userz", "-p", "2024-06-01"], "unknown_dataset: no dataset 'fivetran.app.userz'"),
    (["fivetran.app.users", "-p", "2025-13-45"],
     "bad_partition: fivetran.app.users: '2025-13-45' is not a daily"),
    (["fivetran.app.users", "-p", "yesterday"], "'yesterday' is not a daily partition key"),
    (["fivetran.app.users"], "a daily dataset needs a partition key"),
    (["fivetran.app.users", "-p", "2024-06-01T05"], "'2024-06-01T05' is not a daily"),
    (["web.clicks", "-p", "2024-06-01"], "'2024-06-01' is not a hourly"),
    (["ref.countries", "-p", "2024-06-01"], "unpartitioned dataset got partition '2024-06-01'"),
    (["sales.by_region", "-p", "asia"], "'asia' is not one of the static keys ['eu', 'us']"),
])
def test_publish_with_spec_refuses_events_that_do_not_fit(settings: Settings, spec_file: Path, args,
                                                          says: str) -> None:
    result = CliRunner().invoke(build_app(), ["publish", *args, "--spec", str(spec_file)])
    assert result.exit_code == 1, result.output
    assert says in result.output and "nothing published: 1 of 1 event(s) refused" in result.output
    assert read_events(settings, 0) == []


@pytest.mark.parametrize("args", [
    ["fivetran.app.users", "-p", "2024-06-01"], ["web.clicks", "-p", "2024-06-01T23"], ["ref.countries"],
    ["sales.by_region", "-p", "eu"], ["features.daily", "-p", "2024-06-01"],  # a job's output is known too
])
def test_publish_with_spec_publishes_events_that_fit(settings: Settings, spec_file: Path, args) -> None:
    result = CliRunner().invoke(build_app(), ["publish", *args, "--spec", str(spec_file)])
    assert result.exit_code == 0, result.output
    [event] = read_events(settings, 1)
    assert (event.dataset, event.partition) == (args[0], args[2] if len(args) > 1 else None)


def test_publish_with_a_broken_spec_names_file_and_line(settings: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("datasets:\n  a: {partitioning: weekly}\n")
    result = CliRunner().invoke(build_app(), ["publish", "a", "--spec", str(broken)])
    assert result.exit_code == 1 and f"{broken}:2" in result.output
    missing = CliRunner().invoke(build_app(), ["publish", "a", "--spec", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "cannot read the spec" in missing.output
    assert read_events(settings, 0) == []


def test_a_retried_publish_with_the_same_event_id_is_a_noop_downstream(settings: Settings, spec_file: Path,
                                                                     tmp_path: Path) -> None:
    args = ["publish", "fivetran.app.users", "-p", "2024-06-01", "--event-id", "nightly-users-2024-06-01",
            "--spec", str(spec_file)]
    first, retry = CliRunner().invoke(build_app(), args), CliRunner().invoke(build_app(), args)
    assert first.exit_code == retry.exit_code == 0 and first.output == retry.output
    assert first.output.startswith("nightly-users-2024-06-01\tsucceeded\tfivetran.app.users[2024-06-01]")
    # both are on the bus ...
    assert [e.event_id for e in read_events(settings, 2)] == ["nightly-users-2024-06-01"] * 2
    with Coordinator(load_spec(spec_file), settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=60)
    assert (stats.runs_created, stats.succeeded) == (1, 1)  # recorded once, run once
    assert (tmp_path / "ran.log").read_text().split() == ["2024-06-01"]
    bad = CliRunner().invoke(build_app(), ["publish", "x", "--event-id", ""])
    assert bad.exit_code == 1 and "event_id" in bad.output
