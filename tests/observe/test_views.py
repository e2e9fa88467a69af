"""`coord show`, `coord lineage` and `coord status` on a history recorded by the real engine."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from coordinator.cli import build_app
from coordinator.operations import retry
from coordinator.store import StateStore
from tests.observe.journey import DAY, publish, raw_events, run_engine, spec_for


def invoke(*args: str) -> str:
    out = CliRunner().invoke(build_app(), list(args), catch_exceptions=False, terminal_width=250)
    assert out.exit_code == 0, out.output
    return out.output


def flat(text: str) -> str:
    return " ".join(text.split())


def test_show_lineage_and_status_views(env):
    tmp_path, _, settings = env
    spec = spec_for(tmp_path / "marker")
    publish(settings, raw_events())
    stats = run_engine(spec, settings)
    assert (stats.succeeded, stats.failed) == (2, 1)  # prep ×2, load[01] failed
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        [load] = tx.list_runs(job="load")
        [prep] = tx.list_runs(job="prep", partition=DAY)

    shown = invoke("show", load.run_id[:12])
    assert f"run {load.run_id}" in shown and "failed" in shown
    for text in ("raw-b-0101", "raw.b", "clean.a", "attempt 1/1", "exit code 3", "marker missing",
                 "loading 2024-01-01", "outputs:"):
        assert text in flat(shown), text
    assert "test -e" in flat(shown)  # the launched command
    clean_event = [v for v in load.inputs if v.dataset == "clean.a"][0].event_id
    assert clean_event in shown  # exact version consumed
    assert f"mid[{DAY}] failed" in shown  # the failed event it published

    shown = invoke("show", prep.run_id)
    assert "succeeded" in shown and "prepping 2024-01-01" in shown and "raw-a-0101" in shown
    assert f"clean.a[{DAY}] succeeded event {clean_event} by coordinator" in shown

    # lineage of clean.a: upstream raw.a via prep; downstream the failed load run
    lin = flat(invoke("lineage", "clean.a", "--partition", DAY))
    assert f"clean.a[{DAY}] succeeded event {clean_event}" in lin and f"run {prep.run_id} prep" in lin
    assert "raw.a[2024-01-01] succeeded event raw-a-0101" in lin and "external" in lin
    assert f"run {load.run_id} load[{DAY}] failed" in lin

    status = flat(invoke("status", "--last", "3"))
    assert "mid" in status and "✗" in status and "load[2024-01-02] waits for raw.b[2024-01-02]" in status
    assert "fresh" in status and re.search(r"raw\.a +\d+[smh] ", status), status

    # fix, retry, continue: the whole chain is exact, end to end
    (tmp_path / "marker").touch()
    with StateStore(settings.resolved_state_url()) as store:
        retry(store, load.run_id)
    stats = run_engine(spec, settings)
    assert (stats.succeeded, stats.failed) == (2, 0)
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        [after] = tx.list_runs(job="after")
    lin = flat(invoke("lineage", "out", "--partition", DAY))
    for text in (f"run {after.run_id} after", f"run {load.run_id} load[{DAY}] succeeded",
                 f"run {prep.run_id} prep", "raw-a-0101", "raw-b-0101", clean_event):
        assert text in lin, text
    lin = flat(invoke("lineage", "raw.b", "--partition", DAY))
    assert f"run {load.run_id} load[{DAY}] succeeded → mid[{DAY}] succeeded" in lin
    assert f"run {after.run_id} after[{DAY}] succeeded → out[{DAY}] succeeded" in lin
    shown = flat(invoke("show", load.run_id))
    assert "attempt 1/1 (2 overall)" in shown and "succeeded" in shown  # of the budget the retry gave
    assert "1 │ failed" in shown and "2 │ succeeded" in shown
    assert "exit code 3: ERROR: marker missing" in shown
    assert f"mid[{DAY}] succeeded event" in shown


def _json(*args: str):
    import json

    out = CliRunner().invoke(build_app(), [*args, "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)  # one JSON value, nothing else on stdout


def test_views_print_one_json_value_and_refuse_bad_options(env, tmp_path, monkeypatch):
    from tests.observe.recovery import DAY as PDAY
    from tests.observe.recovery import SPEC, plans, recovery_spec

    _, _, settings = env
    spec_file = tmp_path / "recovery.yaml"
    spec_file.write_text(SPEC)
    monkeypatch.setenv("COORD_SPEC", str(spec_file))
    spec = recovery_spec()
    for version, plan_type in ((1, "string"), (2, "int64")):
        publish(settings, [plans(version, plan_type)])
        run_engine(spec, settings)

    listing = _json("runs")
    assert listing["total"] == 3 and [r["state"] for r in listing["runs"]][0] == "blocked"
    blocked = listing["runs"][0]
    assert blocked["superseded_by"] is None and set(blocked) >= {"started_at", "duration_s", "try", "lease"}
    assert [r["job"] for r in _json("runs", "--state", "succeeded", "--job", "report")["runs"]] == ["report"]
    assert _json("runs", "--since", "2999-01-01")["total"] == 0
    assert _json("runs", "--until", "2999-01-01T00:00+01:00", "--since", "2000-01-01")["total"] == 3
    text = flat(CliRunner().invoke(build_app(), ["show", blocked["run_id"][:10]]).output)
    assert "v2 of 2" in text and "plan: string → int64" in text and "columns: id int64, plan int64" in text
    assert f"next: coord rerun model -p {PDAY}" in text
    shown = _json("show", blocked["run_id"][:10])
    assert shown["next"]["command"] == f"coord rerun model -p {PDAY}"
    assert shown["inputs"][0]["changed"] == ["plan: string → int64"]
    why = _json("why", "model", "-p", PDAY)
    assert why["state"] == "blocked" and why["next"] == shown["next"]
    status = _json("status")
    model_out = {d["dataset"]: d for d in status["datasets"]}["scored"]
    assert status["partitions"] == [PDAY] and model_out["cells"] == {PDAY: "blocked"}
    lineage = _json("lineage", "report", "-p", PDAY)
    assert lineage["upstream"]["run"]["job"] == "report"
    assert lineage["upstream"]["children"][0]["dataset"] == "scored"

    publish(settings, [plans(3, "string")])
    run_engine(spec, settings)
    again = {r["run_id"]: r for r in _json("runs")["runs"]}[blocked["run_id"]]
    assert again["superseded_by"] and _json("show", blocked["run_id"])["next"] is None
    assert _json("status")["datasets"][1]["cells"] == {PDAY: "complete"}  # scored: fixed
    monkeypatch.setenv("COLUMNS", "80")
    table = CliRunner().invoke(build_app(), ["runs"]).output
    assert blocked["run_id"][:12] in table and all(len(line) <= 80 for line in table.splitlines())
    grid = CliRunner().invoke(build_app(), ["status"]).output
    assert all(len(line) <= 80 for line in grid.splitlines()) and "raw.plans" in grid
    monkeypatch.setenv("COLUMNS", "140")
    wide = CliRunner().invoke(build_app(), ["runs"]).output
    assert "superseded" in wide and "coordinator#" in wide  # the owner column too

    for args in (["runs", "--state", "faild"], ["runs", "--from", "2024-03-02", "--to", "2024-03-01"],
                 ["why", "nope", "-p", PDAY], ["why", "model"], ["runs", "--since", "yesterday"]):
        out = CliRunner().invoke(build_app(), args)
        assert out.exit_code == 2, (args, out.output)  # a usage error, named
    backwards = CliRunner().invoke(build_app(), ["backfill", "model", "--from", "2024-03-02", "--to", PDAY])
    assert backwards.exit_code == 1 and "comes after --to" in backwards.output, backwards.output
    refused = CliRunner().invoke(build_app(), ["runs", "--state", "faild"]).output
    assert "'faild' is not a run state" in flat(refused)
    retried = flat(CliRunner().invoke(build_app(), ["retry", blocked["run_id"]]).output)  # on the old input
    assert f"raw.plans[{PDAY}] changed since; to run on the latest: coord rerun model -p {PDAY}" in retried


def test_the_status_grid_keeps_dataset_names_whole_and_drops_old_partitions_to_fit():
    from rich.console import Console

    from coordinator.cli.views import _fitting, _grid

    parts = [f"2024-03-{d:02d}" for d in range(1, 31)]
    found = {"partitions": parts, "datasets": [
        {"dataset": "fivetran.app.users", "newest_at": None, "cells": {p: "complete" for p in parts}}]}
    shown = _fitting(found, 80)
    assert 3 <= len(shown) < 30 and shown[-1] == "2024-03-30"  # the newest kept
    console = Console(width=80, record=True)
    console.print(_grid(found, 80))
    text = console.export_text()
    assert "fivetran.app.users" in text and "2024-03-…" in text and " 30 " in text
    assert all(len(line) <= 80 for line in text.splitlines())
