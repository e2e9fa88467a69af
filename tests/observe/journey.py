"""A small recorded history for the observe tests: the real engine, `command` jobs, the local bus.

    raw.a ─▶ prep ─▶ clean.a ─┐
                              ├─▶ load ─▶ mid ─▶ after ─▶ out
    raw.b ────────────────────┘
`load` fails until the marker file exists (one attempt, so a failure is final); raw.a also has a
second day whose raw.b never came, so `load[2024-01-02]` waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from coordinator.bus.local import LocalBus
from coordinator.engine import Coordinator, RunStats
from coordinator.events import CompletionEvent
from coordinator.hooks import Hook
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.spec.models import PipelineSpec

DAY, NEXT = "2024-01-01", "2024-01-02"

SPEC = """\
datasets:
  raw.a: {partitioning: daily}
  raw.b: {partitioning: daily}
jobs:
  prep:
    kind: command
    inputs: [raw.a]
    outputs: [clean.a]
    settings: {command: [sh, -c, 'echo "prepping {partition}"']}
  load:
    kind: command
    inputs: [clean.a, raw.b]
    outputs: [mid]
    deadline: "06:00"
    settings:
      command:
        - sh
        - -c
        - 'echo "loading {partition}"; test -e {marker} || { echo "ERROR: marker missing" >&2; exit 3; }'
  after:
    kind: command
    inputs: [mid]
    outputs: [out]
    deadline: "06:00"
    settings: {command: [sh, -c, 'echo after']}
"""


def spec_text(marker: Path) -> str:
    return SPEC.replace("{marker}", str(marker))


def spec_for(marker: Path) -> PipelineSpec:
    return parse_spec(spec_text(marker))


def raw_events() -> list[CompletionEvent]:
    return [
        CompletionEvent(event_id="raw-a-0101", dataset="raw.a", partition=DAY, row_count=10),
        CompletionEvent(event_id="raw-b-0101", dataset="raw.b", partition=DAY, row_count=20),
        CompletionEvent(event_id="raw-a-0102", dataset="raw.a", partition=NEXT, row_count=11),
    ]


def publish(settings: Settings, events: Sequence[CompletionEvent]) -> None:
    with Publisher(LocalBus(settings.home / "bus.db"), settings) as p:
        p.publish_many(list(events))
        p.flush()


def run_engine(spec: PipelineSpec, settings: Settings, hooks: Iterable[Hook] = ()) -> RunStats:
    with Coordinator(spec, settings, hooks=hooks) as coord:
        return coord.run(until_idle=True, timeout_s=60)
