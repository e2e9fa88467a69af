"""Outputs that end apart within one run (pure): the result protocol carries each output's own
status, and a run that failed or was blocked announces a built output as built, a failed one with
its own error, a skipped one not at all; outputs without a status follow the run, as before."""

from __future__ import annotations

import json
from pathlib import Path

from coordinator.events import Status
from coordinator.launchers.base import OutputReport, RunResult
from coordinator.launchers.result import read_results, report_output
from coordinator.outcome import failed_events, output_events
from coordinator.spec import parse_spec
from coordinator.store.store import RunRow

SPEC = parse_spec("""
jobs:
  transform:
    kind: command
    outputs: [a, b, c, d]
    settings: {command: ["true"]}
""")
RUN = RunRow(
    "run1",
    "transform",
    None,
    "k",
    1,
    "running",
    "default",
    1,
    1,
    1,
    (),
    None,
    None,
    0.0,
    None,
    0.0,
    None,
    None,
)


def test_each_output_ends_as_reported_and_the_rest_follow_the_run() -> None:
    result = RunResult(
        False,
        error="dbt build: b failed",
        outputs=(
            OutputReport("a", location="db.a", row_count=3, status="succeeded"),
            OutputReport("b", status="failed", error="held: dbt tests failed: t1"),
            OutputReport("c", status="skipped", error="skipped by dbt"),
        ),
    )
    events = {e.dataset: e for e in failed_events(SPEC, RUN, result.error, result, now=10.0)}
    assert set(events) == {"a", "b", "d"}  # c was skipped: no event at all
    assert events["a"].status is Status.SUCCEEDED and (events["a"].location, events["a"].row_count) == (
        "db.a",
        3,
    )
    assert events["b"].status is Status.FAILED and events["b"].error == "held: dbt tests failed: t1"
    assert events["d"].status is Status.FAILED and events["d"].error == "dbt build: b failed"
    plain = failed_events(SPEC, RUN, "boom")  # a run without a result (blocked before launch)
    assert {(e.dataset, e.status, e.error) for e in plain} == {(d, Status.FAILED, "boom") for d in "abcd"}
    assert [e.status for e in output_events(SPEC, RUN, RunResult(True), 10.0)] == [Status.SUCCEEDED] * 4


def test_the_result_file_carries_statuses_and_refuses_unknown_ones(tmp_path: Path) -> None:
    path = tmp_path / "result.jsonl"
    report_output("a", row_count=1, status="succeeded", result_file=str(path))
    report_output("b", status="failed", error="it broke", result_file=str(path))
    report_output("c", result_file=str(path))
    with open(path, "a") as f:
        f.write(json.dumps({"dataset": "d", "status": "maybe"}) + "\n")
    outputs, _ = read_results(path)
    assert [(o.dataset, o.status, o.error) for o in outputs] == [
        ("a", "succeeded", None),
        ("b", "failed", "it broke"),
        ("c", None, None),
        ("d", "failed", "the job reported output status 'maybe' (not one of succeeded, failed, skipped)"),
    ]
