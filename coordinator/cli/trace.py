"""`coord show RUN_ID` and `coord lineage DATASET`: one run in full, and a version's journey.

coord show RUN_ID [--spec F] [--lines N]        inputs (event ids), command, timings, attempts,
                                                error, root cause, log tail, outputs
coord lineage DATASET [--partition P] [--spec F]  upstream and downstream, exact versions
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from coordinator import history
from coordinator.cli.context import cli_settings, state_store
from coordinator.cli.run import SpecOpt, load_or_exit
from coordinator.events import CompletionEvent
from coordinator.secrets import Masker
from coordinator.store.store import RunRow


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _took(start: float | None, end: float | None) -> str:
    return f"{end - start:.1f}s" if start and end else "-"


def _version(ev: CompletionEvent) -> str:
    where = f"[{ev.partition}]" if ev.partition else ""
    rows = f" rows={ev.row_count}" if ev.row_count is not None else ""
    return f"{ev.dataset}{where} {ev.status.value} event {ev.event_id} by {ev.producer}{rows}"


def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix)")],
    spec: SpecOpt = "pipeline.yaml",
    lines: Annotated[int, typer.Option("--lines", "-n", help="Log lines to show")] = 30,
) -> None:
    """Everything about one run: what it consumed, ran, logged and produced."""
    console = Console()
    loaded = load_or_exit(spec, console)
    settings = cli_settings()
    with state_store(settings) as store, store.begin() as tx:
        matches = tx.find_runs(run_id)
        if len(matches) != 1:
            console.print(f"[red]error[/red]: {'no run' if not matches else 'ambiguous run id'} {run_id!r}")
            raise typer.Exit(1)
        run = matches[0]
        attempts = tx.attempts(run.run_id)
        outputs = history.run_outputs(tx, loaded, run)
        cause = history.root_cause(tx, loaded, run.job, run.partition) if run.state != "succeeded" else None
    masker = Masker.of(settings, loaded)  # nothing shown carries a secret (coordinator/secrets.py)
    out = console.print
    out(f"[bold]run {run.run_id}[/bold]  {run.job}[{run.partition or ''}]  {run.state}", highlight=False)
    out(
        f"attempt {run.attempt}/{run.max_attempts}  pool {run.pool}  owner {run.owner or '-'}  "
        f"created {_when(run.created_at)}  started {_when(run.started_at)}  "
        f"finished {_when(run.finished_at)}  took {_took(run.started_at, run.finished_at)}",
        highlight=False,
    )
    argv = masker.argv(history.launched_command(run))
    out(f"command: {shlex.join(argv) if argv else '-'}", highlight=False)
    table = Table(title="inputs (exact versions consumed)")
    for col in ("dataset", "partition", "event id", "rows", "location"):
        table.add_column(col, overflow="fold")
    for v in run.inputs:
        table.add_row(
            v.dataset,
            v.partition or "",
            v.event_id,
            "" if v.row_count is None else str(v.row_count),
            v.location or "",
        )
    out(table)
    table = Table(title="attempts")
    for col in ("#", "state", "started", "finished", "took", "error", "details"):
        table.add_column(col, overflow="fold")
    for a in attempts:
        table.add_row(
            str(a["attempt"]),
            a["state"],
            _when(a["started_at"]),
            _when(a["finished_at"]),
            _took(a["started_at"], a["finished_at"]),
            (masker.text(a["error"]) or "")[:300],
            (masker.text(a.get("details")) or "")[:300],
        )
    out(table)
    if run.error:
        out(f"[red]error[/red]: {masker.text(run.error)}", highlight=False)
    if cause is not None and cause.run_id != run.run_id:
        out(
            f"root cause: run {cause.run_id} {cause.job}[{cause.partition or ''}] {cause.state}: "
            f"{masker.text(cause.error)}",
            highlight=False,
        )
    if attempts:
        path = history.attempt_log(run, attempts[-1], settings.home)
        tail = masker.text(history.log_tail(path, lines))
        out(f"[bold]log[/bold] {path} (last {lines} lines)", highlight=False)
        out(tail or "(empty)", highlight=False, markup=False)
    out("outputs:" if outputs else "outputs: none", highlight=False)
    for ev in outputs:
        extra = f" error: {masker.text(ev.error)}" if ev.error else ""
        out(f"  {_version(ev)}{extra}", highlight=False, markup=False)


def _run_label(run: RunRow | None) -> str:
    return f"run {run.run_id} {run.job}[{run.partition or ''}] {run.state}" if run else "external"


def _add_up(tree: Tree, node: history.Node) -> None:
    branch = tree.add(f"{_version(node.event)}  ← {_run_label(node.run)}", highlight=False)
    for child in node.children:
        _add_up(branch, child)


def _add_down(tree: Tree, node: history.Node) -> None:
    branch = tree.add(f"{_run_label(node.run)} → {_version(node.event)}", highlight=False)
    for child in node.children:
        _add_down(branch, child)


def lineage(
    dataset: Annotated[str, typer.Argument()],
    partition: Annotated[str | None, typer.Option("--partition", "-p")] = None,
    spec: SpecOpt = "pipeline.yaml",
) -> None:
    """Where a dataset partition's latest version came from, and what consumed it since."""
    console = Console()
    loaded = load_or_exit(spec, console)
    with state_store(cli_settings()) as store, store.begin() as tx:
        ev = history.latest_event(tx, dataset, partition)
        if ev is None:
            console.print(f"no version of {dataset}{f'[{partition}]' if partition else ''} is recorded")
            raise typer.Exit(1)
        up = history.upstream(tx, ev)
        down = history.downstream(tx, loaded, ev)
    tree = Tree("[bold]upstream[/bold]")
    _add_up(tree, up)
    console.print(tree)
    tree = Tree(f"[bold]downstream[/bold] of event {ev.event_id}")
    for run, nodes in down:
        if not nodes:
            tree.add(f"{_run_label(run)} (no output yet)", highlight=False)
        for node in nodes:
            _add_down(tree, node)
    if not down:
        tree.add("nothing has consumed this version yet")
    console.print(tree)


def register(app: typer.Typer) -> None:
    app.command("show")(show)
    app.command("lineage")(lineage)
