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


def test_a_storm_of_resyncs_leaves_no_join_on_superseded_data(settings: Settings):
    """90 days; raw.a comes twice per day (a stale re-sync and the newer version), raw.b once, in a
    shuffled order and in chunks with the engine running between them. By default no join
    partition ends on superseded data; under all_new those whose stale raw.a came first do."""
    import random

    spec = parse_spec(SPEC_TEXT)
    stub = StubLauncher(kind="command")
    rnd = random.Random(17)
    days = [(datetime(2024, 1, 1) + timedelta(days=i)).date().isoformat() for i in range(90)]
    events = []
    for i, day in enumerate(days):
        for dataset, eid, at in (("raw.a", "old", 10), ("raw.a", "new", 30), ("raw.b", "b", 20)):
            produced = T0 + timedelta(days=i, seconds=at)
            events.append(
                CompletionEvent(
                    event_id=f"{dataset}-{eid}-{day}", dataset=dataset, partition=day, produced_at=produced
                )
            )
    rnd.shuffle(events)
    for start in range(0, len(events), 30):
        publish(settings, events[start : start + 30])
        run(spec, settings, stub)
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        stale = stale_partitions(tx, spec.jobs)
        joins = tx.list_runs("join", limit=None)
    by_job = {job: sum(s.job == job for s in stale) for job in spec.jobs}
    first_stale = sum(
        events.index(next(e for e in events if e.event_id == f"raw.a-old-{d}"))
        < events.index(next(e for e in events if e.event_id == f"raw.a-new-{d}"))
        for d in days
    )
    assert by_job["join"] == 0 and by_job["report"] == 0
    assert {r.partition for r in joins} == set(days) and len(joins) <= 2 * len(days)
    assert by_job["strict"] > 0 and by_job["strict"] <= first_stale
    print(f"storm: {len(joins)} join runs, {by_job['strict']} of 90 all_new partitions stale")


def test_a_superseded_run_still_running_never_finishes_after_its_successor(settings: Settings):
    """The join starts on the stale raw.a and takes long; the newer raw.a arrives meanwhile. The
    re-run waits for the first run to end instead of running beside it: otherwise the first could
    finish last, overwrite the partition with stale data and be the version the report reads."""
    import threading
    import time

    spec = parse_spec(
        SPEC_TEXT.replace("{command: x}", '{command: "true"}').replace(
            "join:   {kind: command, inputs: [raw.a, raw.b], outputs: [mid], trigger: all, "
            'settings: {command: "true"}}',
            "join:   {kind: command, inputs: [raw.a, raw.b], outputs: [mid], settings: {command: "
            "[sh, -c, 'case \"$COORD_INPUTS\" in *stale*) sleep 3;; esac']}}",
        )
    )
    coord = Coordinator(spec, settings)  # the command kind: real processes
    publish(settings, [event("raw.a", "a-stale", 10), event("raw.b", "b-1", 20)])
    # until idle: the re-run waits "ready" while the first runs, so idle means both ran (and the report)
    loop = threading.Thread(target=coord.run, kwargs={"until_idle": True, "timeout_s": 12})
    loop.start()
    deadline = time.monotonic() + 10
    with StateStore(settings.resolved_state_url()) as store:
        while time.monotonic() < deadline:  # the first join is running
            with store.begin() as tx:
                if any(r.state == "running" for r in tx.list_runs("join", limit=None)):
                    break
            time.sleep(0.05)
        publish(settings, [event("raw.a", "a-new", 30)])
        loop.join(20)
        coord.close()
        with store.begin() as tx:
            joins = sorted(tx.list_runs("join", limit=None), key=lambda r: r.created_at)
            mid = tx.latest_versions("mid")
            reports = sorted(tx.list_runs("report", limit=None), key=lambda r: r.created_at)
    assert [sorted(v.event_id for v in r.inputs) for r in joins] == [["a-stale", "b-1"], ["a-new", "b-1"]]
    assert all(r.state == "succeeded" for r in joins)
    first, second = joins
    assert second.started_at >= first.finished_at  # never beside it
    [newest_mid] = mid
    last_report = reports[-1]
    [read] = last_report.inputs
    assert read.event_id == newest_mid.event_id
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        event_of_mid = tx.get_event(newest_mid.event_id)
    assert event_of_mid is not None and event_of_mid.producer_run_id == second.run_id
