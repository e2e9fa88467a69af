"""The demo's live table and summary: what a person sees and what `--json` prints."""

from __future__ import annotations

import json

from rich.console import Console

from coordinator.demo.progress import runs_table
from coordinator.demo.summary import DemoSummary, RunSummary

RUNS = [
    RunSummary(job="features", partition="2025-06-02", state="succeeded", seconds=21.5),
    RunSummary(job="features", partition="2025-06-03", state="running", seconds=3.0),
    RunSummary(job="scores", partition="2025-06-02", state="failed", seconds=1.0, error="boom"),
    RunSummary(job="scores", partition="2025-06-03", state="waiting"),
]


def _text(renderable) -> str:
    console = Console(record=True, width=140)
    console.print(renderable)
    return console.export_text()


def test_runs_table_counts_runs_by_state_per_job() -> None:
    lines = _text(runs_table(RUNS, ["features", "scores", "push"])).splitlines()
    features = next(line for line in lines if line.startswith("│ features"))
    scores = next(line for line in lines if line.startswith("│ scores"))
    push = next(line for line in lines if line.startswith("│ push"))
    cells = lambda line: [c.strip() for c in line.strip("│┃").replace("┃", "│").split("│")]  # noqa: E731
    header = cells(next(line for line in lines if "waiting" in line))
    assert dict(zip(header, cells(features), strict=True))["succeeded"] == "1"
    assert dict(zip(header, cells(features), strict=True))["now running"] == "2025-06-03"
    assert dict(zip(header, cells(scores), strict=True))["failed"] == "1"
    assert dict(zip(header, cells(scores), strict=True))["waiting"] == "1"
    assert all(c == "" for c in cells(push)[1:])


def test_summary_json_has_the_promised_fields() -> None:
    summary = DemoSummary(succeeded=False, home="h", product_db="sqlite:///p.db", table="user_scores",
                          latest_day="2025-06-03", runs_launched=0, rows_pushed=12, rows_in_table=12,
                          users_scored_latest_day=6, runs=RUNS, seconds=30.0, look="sqlite3 p.db 'select 1'")
    data = json.loads(summary.model_dump_json())
    assert data["rows_pushed"] == 12 and data["product_db"] == "sqlite:///p.db"
    assert {"job", "partition", "state", "seconds"} <= set(data["runs"][0])
    text = _text_of_print(summary)
    assert "journey did not complete" in text and "scores[2025-06-02]: boom" in text


def _text_of_print(summary: DemoSummary) -> str:
    console = Console(record=True, width=140)
    summary.print(console)
    return console.export_text()
