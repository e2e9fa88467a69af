"""A contract break and its fix, for the operator's views: `model` requires raw.plans' column
`plan` to be a string; version 2 of raw.plans[DAY] makes it int64 (the run is blocked), version 3
fixes it (a new run succeeds, `report` after it, and the blocked run is superseded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coordinator.events import Column, CompletionEvent
from coordinator.spec import parse_spec
from coordinator.spec.models import PipelineSpec

DAY = "2024-03-01"
T0 = datetime(2024, 3, 2, 1, 0, tzinfo=UTC)

SPEC = """\
datasets:
  raw.plans: {partitioning: daily}
jobs:
  model:
    kind: command
    inputs: [raw.plans]
    outputs: [scored]
    contract: {raw.plans: [{name: plan, type: string}]}
    settings: {command: [sh, -c, 'echo "scoring {partition}"']}
  report:
    kind: command
    inputs: [scored]
    outputs: [report]
    settings: {command: [sh, -c, 'echo report']}
"""


def recovery_spec() -> PipelineSpec:
    return parse_spec(SPEC)


def plans(version: int, plan_type: str) -> CompletionEvent:
    """Version `version` of raw.plans[DAY], its column `plan` typed `plan_type`."""
    return CompletionEvent(
        event_id=f"plans-v{version}",
        dataset="raw.plans",
        partition=DAY,
        row_count=100 + version,
        produced_at=T0 + timedelta(minutes=version),
        producer="ingest",
        columns=(Column(name="id", type="int64"), Column(name="plan", type=plan_type)),
    )
