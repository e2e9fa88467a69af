"""A three-level DAG of `command` jobs that log when they ran, shared by the engine tests.

raw.a ─┐            ┌─ left ── final
       ├─ join ─ mid┤
raw.b ─┘            └─ right
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from coordinator.events import CompletionEvent
from coordinator.spec import parse_spec

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]


def job(inputs: str, output: str, log: Path, sleep: float) -> str:
    cmd = f's=$(date +%s.%N); sleep {sleep}; echo "{{job}} {{partition}} $s $(date +%s.%N)" >> {log}'
    return (
        f"{{kind: command, inputs: [{inputs}], outputs: [{output}], pool: work, "
        f"settings: {{command: [sh, -c, '{cmd}']}}}}"
    )


def dag_spec(log: Path, sleep: float = 0.3):
    return parse_spec(f"""
datasets: {{raw.a: {{partitioning: daily}}, raw.b: {{partitioning: daily}}}}
jobs:
  join: {job("raw.a, raw.b", "mid", log, sleep)}
  left: {job("mid", "left_out", log, sleep)}
  right: {job("mid", "right_out", log, sleep)}
  final: {job("left_out", "final_out", log, sleep)}
pools: {{work: 4}}
""")


def shuffled_events(seed: int = 7) -> list[CompletionEvent]:
    events = [
        CompletionEvent(dataset=d, partition=p, producer="test") for d in ("raw.a", "raw.b") for p in DAYS
    ]
    rnd = random.Random(seed)
    events = events + rnd.sample(events, 3)  # duplicates (same event ids)
    rnd.shuffle(events)
    return events


def read_log(log: Path) -> dict[tuple[str, str], list[tuple[float, float]]]:
    out: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        name, partition, start, end = line.split()
        out[(name, partition)].append((float(start), float(end)))
    return out


def check_dag(log: Path) -> None:
    """Every job partition ran exactly once, after its inputs, and left/right overlapped."""
    check_ran(read_log(log))


def check_ran(ran: dict[tuple[str, str], list[tuple[float, float]]]) -> None:
    """`check_dag` on (job, partition) → [(start, end)] of every run, however they were recorded."""
    assert sorted(ran) == sorted((j, d) for j in ("join", "left", "right", "final") for d in DAYS)
    assert all(len(v) == 1 for v in ran.values()), ran
    upstream = {"left": "join", "right": "join", "final": "left"}
    for (name, day), [(start, _)] in ran.items():
        if name in upstream:
            assert start >= ran[(upstream[name], day)][0][1], (
                f"{name}[{day}] started before its input was complete"
            )
    overlaps = [
        day
        for day in DAYS
        if ran[("left", day)][0][0] < ran[("right", day)][0][1]
        and ran[("right", day)][0][0] < ran[("left", day)][0][1]
    ]
    assert overlaps, "left and right never ran at the same time"
