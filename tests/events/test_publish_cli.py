"""`coord publish` and the `coordinator.publish(...)` SDK call put valid events on the bus."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from coordinator.cli import build_app
from coordinator.events import Column, Status
from coordinator.settings import Settings
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
