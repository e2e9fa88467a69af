"""The read side of the state store: what a run consumed and produced, and who consumed it.

The engine writes runs, events and partition versions (coordinator/store); the views — `coord
show`, `coord lineage`, the web UI, alerts — read them here. Every edge of the lineage is exact:
a run stores the event ids of the input versions it consumed, and its output events carry its
run id (`producer_run_id`), so the graph is walked by ids, never guessed from names or times.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from coordinator import rundirs
from coordinator.events import CompletionEvent
from coordinator.spec.models import PipelineSpec
from coordinator.store.store import RunRow, Tx

MAX_DEPTH = 12


def event(tx: Tx, event_id: str) -> CompletionEvent | None:
    return tx.get_event(event_id)


def run_outputs(tx: Tx, spec: PipelineSpec, run: RunRow) -> list[CompletionEvent]:
    """The events this run produced (succeeded or failed), oldest first."""
    job = spec.jobs.get(run.job)
    datasets = list(job.outputs) if job else []
    if not datasets:
        return []
    return [ev for ev in tx.events_at(datasets, run.partition) if ev.producer_run_id == run.run_id]


def consuming_runs(tx: Tx, spec: PipelineSpec, ev: CompletionEvent) -> list[RunRow]:
    """Runs (of the jobs reading `ev.dataset`) whose recorded inputs include exactly `ev`."""
    jobs = sorted({name for name, _ in spec.consumers.get(ev.dataset, ())})
    if not jobs:
        return []
    rows = tx.runs_reading(jobs, ev.event_id)
    return [run for run in rows if any(v.event_id == ev.event_id for v in run.inputs)]


def producing_run(tx: Tx, ev: CompletionEvent) -> RunRow | None:
    if ev.producer != "coordinator" or not ev.producer_run_id:
        return None
    return tx.get_run(ev.producer_run_id)


def latest_event(tx: Tx, dataset: str, partition: str | None) -> CompletionEvent | None:
    """The recorded latest complete version of a dataset partition, else its newest event."""
    event_id = tx.version_event_id(dataset, partition)
    if event_id:
        return event(tx, event_id)
    return tx.newest_event(dataset, partition)


@dataclass
class Node:
    """One dataset version in a lineage tree, with the run that produced or consumed it."""

    event: CompletionEvent
    run: RunRow | None = None  # upstream: the producing run; downstream: the consuming run
    children: list[Node] = field(default_factory=list)


def upstream(tx: Tx, ev: CompletionEvent, depth: int = 0) -> Node:
    """`ev`, the run that produced it, and recursively the exact versions that run consumed."""
    node = Node(ev, producing_run(tx, ev))
    if node.run is not None and depth < MAX_DEPTH:
        for v in node.run.inputs:
            parent = event(tx, v.event_id)
            if parent is not None:
                node.children.append(upstream(tx, parent, depth + 1))
    return node


def downstream(tx: Tx, spec: PipelineSpec, ev: CompletionEvent) -> list[tuple[RunRow, list[Node]]]:
    """Runs that consumed `ev` and, per run, the versions it produced with their own consumers."""
    out = []
    for run in consuming_runs(tx, spec, ev):
        nodes = []
        for produced in run_outputs(tx, spec, run):
            node = Node(produced, run)
            _grow_down(tx, spec, node, 1)
            nodes.append(node)
        out.append((run, nodes))
    return out


def _grow_down(tx: Tx, spec: PipelineSpec, node: Node, depth: int) -> None:
    if depth >= MAX_DEPTH:
        return
    for run in consuming_runs(tx, spec, node.event):
        for produced in run_outputs(tx, spec, run):
            child = Node(produced, run)
            _grow_down(tx, spec, child, depth + 1)
            node.children.append(child)


def root_cause(tx: Tx, spec: PipelineSpec, job: str, partition: str | None) -> RunRow | None:
    """The first failed (or blocked) run upstream of (job, partition): walk the inputs that are
    missing, to the runs that should have produced them, until a run that is itself failed."""
    from coordinator import readiness

    seen: set[tuple[str, str | None]] = set()
    todo = deque([(job, partition)])
    found: RunRow | None = None
    while todo:
        j, p = todo.popleft()
        if (j, p) in seen or j not in spec.jobs:
            continue
        seen.add((j, p))
        for dataset, dp in readiness.needed(spec, j, p):
            if latest_event_ok(tx, dataset, dp):
                continue
            producer = spec.producers.get(dataset)
            if producer is None:
                continue
            runs = tx.list_runs(job=producer, partition=dp, limit=1)
            if runs and runs[0].state in ("failed", "blocked"):
                found = runs[0]  # keep walking: an earlier failure further up wins
            todo.append((producer, dp))
    return found


def latest_event_ok(tx: Tx, dataset: str, partition: str | None) -> bool:
    return tx.version_event_id(dataset, partition) is not None


def attempt_log(run: RunRow, attempt: dict, home: Path) -> Path:
    """The log file of one attempt: the one the launcher reported, else the attempt's folder."""
    if attempt.get("log_path"):
        return Path(attempt["log_path"])
    return rundirs.attempt_log(home, run.run_id, attempt["attempt"])


def log_tail(path: Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last `lines` lines of a log (reading at most `max_bytes` from its end)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def launched_command(run: RunRow) -> list[str] | None:
    if run.handle is None:
        return None
    argv = run.handle.data.get("argv")
    return [str(a) for a in argv] if isinstance(argv, list) else None
