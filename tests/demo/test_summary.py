"""The demo's live table and summary: what a person sees and what `--json` prints."""

from __future__ import annotations

import json

from rich.console import Console

from coordinator.demo.progress import running_line, runs_table
from coordinator.demo.summary import DemoSummary, RunSummary

RUNS = [
    RunSummary(job="features", kind="spark", partition="2025-06-02", state="succeeded", seconds=21.5),
    RunSummary(job="features", kind="spark", partition="2025-06-03", state="running", seconds=3.0),
    RunSummary(job="scores", kind="score", partition="2025-06-02", state="failed", seconds=1.0, error="boom"),
    RunSummary(job="scores", kind="score", partition="2025-06-03", state="waiting"),
]


def _text(renderable, width: int = 140) -> str:
    console = Console(record=True, width=width)
    console.print(renderable)
    return console.export_text()


def test_runs_table_counts_runs_by_state_per_job_in_80_columns() -> None:
    text = _text(runs_table(RUNS, ["features", "scores", "push_user_scores"]), width=80)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    header = rows.pop("job")
    assert header == ["waiting", "ready", "running", "succeeded", "failed", "blocked"]
    assert dict(zip(header, rows["features"], strict=True)) == {
        "waiting": "·", "ready": "·", "running": "1", "succeeded": "1", "failed": "·", "blocked": "·"}
    assert dict(zip(header, rows["scores"], strict=True))["failed"] == "1"
    assert dict(zip(header, rows["scores"], strict=True))["waiting"] == "1"
    assert rows["push_user_scores"] == ["·"] * 6
    assert running_line(RUNS) == "running: features[2025-06-03] 3 s"


def test_summary_json_has_the_promised_fields() -> None:
    summary = DemoSummary(succeeded=False, home="h", product_db="sqlite:///p.db", table="user_scores",
                          latest_day="2025-06-03", runs_launched=0, rows_pushed=12, rows_in_table=12,
                          users_scored_latest_day=6, runs=RUNS, seconds=30.0, look="sqlite3 p.db 'select 1'")
    data = json.loads(summary.model_dump_json())
    assert data["rows_pushed"] == 12 and data["product_db"] == "sqlite:///p.db"
    assert {"job", "kind", "partition", "state", "seconds"} <= set(data["runs"][0])
    assert [r["kind"] for r in data["runs"]] == ["spark", "spark", "score", "score"]
    text = _text_of_print(summary)
    assert "journey did not complete" in text and "scores[2025-06-02]: boom" in text
    assert "│ features │ spark │ 2025-06-02 │ succeeded │" in text


def _text_of_print(summary: DemoSummary) -> str:
    console = Console(record=True, width=140)
    summary.print(console)
    return console.export_text()
