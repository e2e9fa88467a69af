"""The storm's stale-version case through the engine, the CLI and the UI's API: a stale version of
raw.a arrives first and the newer one later, raw.b unchanged. By default the join re-runs on the
newer one and downstream follows; under `rerun_on: all_new` it does not, and the partition shows
as stale ("built on v1; v2 exists") in `coord status` and /api/grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coordinator.api.app import create_app
from coordinator.bus.local import LocalBus
from coordinator.cli import build_app
from coordinator.engine import Coordinator
from coordinator.events import CompletionEvent
from coordinator.launchers.stub import StubLauncher
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.staleness import stale_partitions
from coordinator.store import StateStore

SPEC_TEXT = """\
datasets:
  raw.a: {partitioning: daily}
  raw.b: {partitioning: daily}
jobs:
  join:   {kind: command, inputs: [raw.a, raw.b], outputs: [mid], trigger: all, settings: {command: x}}
  report: {kind: command, inputs: [mid], outputs: [out], settings: {command: x}}
  strict: {kind: command, inputs: [raw.a, raw.b], outputs: [mid2], rerun_on: all_new, settings: {command: x}}
  report2: {kind: command, inputs: [mid2], outputs: [out2], settings: {command: x}}
"""
DAY = "2024-01-01"
T0 = datetime(2024, 1, 2, tzinfo=UTC)


def event(dataset: str, event_id: str, seconds: int) -> CompletionEvent:
    return CompletionEvent(
        event_id=event_id,
        dataset=dataset,
        partition=DAY,
        producer="sync",
        produced_at=T0 + timedelta(seconds=seconds),
    )


def publish(settings: Settings, events: list[CompletionEvent]) -> None:
    with Publisher(LocalBus(settings.home / "bus.db"), settings) as p:
        p.publish_many(events)
        p.flush()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home", bus="local", anonymous_reads=True)
    s.home.mkdir()
    return s


def run(spec, settings: Settings, stub: StubLauncher) -> None:
    with Coordinator(spec, settings, launchers={"command": stub}) as coord:
        coord.run(until_idle=True, timeout_s=60)


def consumed(stub: StubLauncher, job: str) -> list[str]:
    return [r.partition for r in stub.runs if r.job == job]


def test_a_newer_version_after_a_stale_one_reruns_the_join_and_downstream(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    spec = parse_spec(SPEC_TEXT)
    stub = StubLauncher(kind="command")
    publish(settings, [event("raw.a", "a-resync-stale", 10), event("raw.b", "b-1", 20)])
    run(spec, settings, stub)
    assert sorted(r.job for r in stub.runs) == ["join", "report", "report2", "strict"]
    publish(settings, [event("raw.a", "a-resync-new", 30)])  # the newer version, later
    run(spec, settings, stub)
    with StateStore(settings.resolved_state_url()) as store:
        with store.begin() as tx:
            joins = sorted(tx.list_runs("join", limit=None), key=lambda r: r.created_at)
            strict = tx.list_runs("strict", limit=None)
            stale = stale_partitions(tx, spec.jobs)
        # the join re-ran on the newer raw.a (and the unchanged raw.b); its report followed
        assert [sorted(v.event_id for v in r.inputs) for r in joins] == [
            ["a-resync-stale", "b-1"],
            ["a-resync-new", "b-1"],
        ]
        assert len(consumed(stub, "report")) == 2 and all(r.state == "succeeded" for r in joins)
        # under rerun_on: all_new the strict job waits for raw.b too: built on the stale raw.a
        assert len(strict) == 1 and len(consumed(stub, "report2")) == 1
        assert [(s.job, s.partition, s.describe()) for s in stale] == [
            ("strict", DAY, f"built on raw.a[{DAY}] v1; v2 exists")
        ]
        # the UI's API marks the partition of strict's output, not the join's
        with TestClient(create_app(settings, spec=spec, store=store)) as client:
            grid = client.get("/api/grid").json()
        cells = {r["dataset"]: r["cells"][0] for r in grid["rows"]}
        assert cells["mid2"]["stale"] == f"built on raw.a[{DAY}] v1; v2 exists"
        assert cells["mid"]["stale"] is None and cells["out"]["stale"] is None
        assert [s["job"] for s in grid["stale"]] == ["strict"]
        assert grid["stale"][0]["built_on"] == {"event_id": "a-resync-stale", "version": 1}
    # coord status shows the mark and the line
    spec_file = tmp_path / "pipeline.yaml"
    spec_file.write_text(SPEC_TEXT)
    monkeypatch.setenv("COORD_HOME", str(settings.home))
    monkeypatch.setenv("COORD_BUS", "local")
    monkeypatch.delenv("COORD_STATE_URL", raising=False)
    out = CliRunner().invoke(build_app(), ["status", "--spec", str(spec_file)], terminal_width=200).output
    assert f"strict[{DAY}] is stale: built on raw.a[{DAY}] v1; v2 exists" in out
    mid2 = next(line for line in out.splitlines() if " mid2 " in line)
    assert "↻" in mid2
    assert "↻" not in next(line for line in out.splitlines() if " mid " in line)
    # once raw.b is new too, strict re-runs and nothing is stale any more
    publish(settings, [event("raw.b", "b-2", 40)])
    run(spec, settings, stub)
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        assert stale_partitions(tx, spec.jobs) == []
    assert len(consumed(stub, "strict")) == 2 and len(consumed(stub, "report2")) == 2
