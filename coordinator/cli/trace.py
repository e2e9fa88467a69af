"""`coord show RUN_ID` and `coord lineage DATASET`: one run in full, and a version's journey.

coord show RUN_ID [--spec F] [--lines N]        inputs (event ids), command, timings, attempts,
                                                error, root cause, log tail, outputs
coord lineage DATASET [--partition P] [--spec F]  upstream and downstream, exact versions
coord why JOB [--partition P] [--spec F]          why a job partition is not running

Each takes --json: one JSON value on stdout. show: the UI's /api/runs/ID (the run, "try", "next",
inputs as versions with columns and "changed", outputs with consumers, attempts, log); lineage:
{"event", "upstream", "downstream": [{"run", "outputs"}]}, nodes {"dataset", "partition",
"event_id", "status", "producer", "row_count", "run", "children"}; why: the UI's /api/why.
"""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from coordinator import history, runview
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
    model = _model(ev)
    used = f" model {model['name']} version {model['version']} ({model['uri']})" if model else ""
    return f"{ev.dataset}{where} {ev.status.value} event {ev.event_id} by {ev.producer}{rows}{used}"


def _model(ev: CompletionEvent) -> dict[str, str] | None:
    """The model version an event names: a score run's output (made with it) or an alias move
    of the registry dataset (mlflow.models.NAME); None for any other event."""
    from coordinator.scoring.registry import REGISTRY_PREFIX as REGISTRY

    a = ev.attributes
    name = a.get("model_name") or (ev.dataset[len(REGISTRY):] if ev.dataset.startswith(REGISTRY) else None)
    if not a.get("model_version") or not name:
        return None
    uri = a.get("model_uri") or f"models:/{name}/{a['model_version']}"
    return {"name": name, "version": a["model_version"], "uri": uri}


def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix)")],
    spec: SpecOpt = "pipeline.yaml",
    lines: Annotated[int, typer.Option("--lines", "-n", help="Log lines to show")] = 30,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON value, the UI's /api/runs/ID")
    ] = False,
) -> None:
    """Everything about one run: what it consumed, ran, logged and produced, and what to run next."""
    console = Console(stderr=as_json)
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
        superseded_by = tx.superseding([run]).get(run.run_id)
        step = runview.next_step(tx, run, superseded_by)
        shape = _shown(tx, loaded, run, superseded_by, step)
    masker = Masker.of(settings, loaded)  # nothing shown carries a secret (coordinator/secrets.py)
    log_path = history.attempt_log(run, attempts[-1], settings.home) if attempts else None
    tail = masker.text(history.log_tail(log_path, lines)) if log_path else ""
    if as_json:
        shape["error"] = masker.text(run.error)
        shape["command"] = masker.argv(history.launched_command(run))
        shape["attempts"] = [masker.value(a) for a in attempts]
        shape["inputs"] = masker.value(shape["inputs"])  # as the UI: a value may carry a secret
        shape["outputs"] = [{**o, "error": masker.text(o["error"])} for o in shape["outputs"]]
        shape["root_cause"] = (
            None if cause is None else {**runview.basic(cause, None), "error": masker.text(cause.error)}
        )
        shape["log"] = tail
        typer.echo(json.dumps(shape, ensure_ascii=False, default=str))
        return
    out = console.print
    out(f"[bold]run {run.run_id}[/bold]  {run.job}[{run.partition or ''}]  {run.state}", highlight=False)
    n = runview.attempt_of_budget(run)  # of the budget that applied; a retry starts a new one
    overall = f" ({n['overall']} overall)" if n["overall"] != n["n"] else ""
    out(
        f"attempt {n['n']}/{n['of']}{overall}  pool {run.pool}  owner {run.owner or '-'}  "
        f"created {_when(run.created_at)}  started {_when(run.started_at)}  "
        f"finished {_when(run.finished_at)}  took {_took(run.started_at, run.finished_at)}",
        highlight=False,
    )
    argv = masker.argv(history.launched_command(run))
    out(f"command: {shlex.join(argv) if argv else '-'}", highlight=False)
    table = Table(title="inputs (exact versions consumed)")
    for col in ("dataset", "partition", "event id", "version", "rows", "columns changed from the one before"):
        table.add_column(col, overflow="fold")
    for i in shape["inputs"]:
        newer = ", newer exists" if i["newer_event_id"] else ""
        table.add_row(
            i["dataset"],
            i["partition"] or "",
            i["event_id"],
            f"v{i['version']} of {i['versions']}{newer}" if i["version"] else "",
            "" if i["row_count"] is None else str(i["row_count"]),
            "; ".join(i["changed"]),
        )
    out(table)
    for i in shape["inputs"]:
        if i["columns"]:
            cols = ", ".join(f"{c['name']} {c['type']}" for c in i["columns"])
            out(f"  {i['dataset']} columns: {cols}", highlight=False, markup=False)
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
    if superseded_by:
        out(f"superseded by the newer run {superseded_by} of its job partition: look there", highlight=False)
    if step:
        out(f"next: {step['command']}  ({step['why']})", highlight=False, markup=False)
    if log_path is not None:
        out(f"[bold]log[/bold] {log_path} (last {lines} lines)", highlight=False)
        out(tail or "(empty)", highlight=False, markup=False)
    out("outputs:" if outputs else "outputs: none", highlight=False)
    for ev in outputs:
        extra = f" error: {masker.text(ev.error)}" if ev.error else ""
        out(f"  {_version(ev)}{extra}", highlight=False, markup=False)


def _shown(tx, loaded, run: RunRow, superseded_by: str | None, step) -> dict:
    """`coord show --json` before masking: the run, its inputs as versions, its outputs."""
    return {
        **runview.basic(run, superseded_by),
        "pool": run.pool,
        "inputs": runview.inputs_json(tx, run),
        "outputs": runview.outputs_json(tx, loaded, run),
        "next": step,
    }


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
    dataset: Annotated[str, typer.Argument(help="The dataset (its latest version is traced)")],
    partition: Annotated[
        str | None, typer.Option("--partition", "-p", help="The dataset's partition")
    ] = None,
    spec: SpecOpt = "pipeline.yaml",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON value: upstream and downstream")
    ] = False,
) -> None:
    """Where a dataset partition's latest version came from, and what consumed it since."""
    console = Console(stderr=as_json)
    loaded = load_or_exit(spec, console)
    with state_store(cli_settings()) as store, store.begin() as tx:
        ev = history.latest_event(tx, dataset, partition)
        if ev is None:
            console.print(f"no version of {dataset}{f'[{partition}]' if partition else ''} is recorded")
            raise typer.Exit(1)
        up = history.upstream(tx, ev)
        down = history.downstream(tx, loaded, ev)
    if as_json:
        shape = {
            "event": _node_json(history.Node(ev)),
            "upstream": _node_json(up),
            "downstream": [
                {"run": _run_json(run), "outputs": [_node_json(n) for n in nodes]} for run, nodes in down
            ],
        }
        typer.echo(json.dumps(shape, ensure_ascii=False, default=str))
        return
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


def _run_json(run: RunRow | None) -> dict | None:
    return (
        None
        if run is None
        else {"run_id": run.run_id, "job": run.job, "partition": run.partition, "state": run.state}
    )


def _node_json(node: history.Node) -> dict:
    ev = node.event
    return {
        "dataset": ev.dataset,
        "partition": ev.partition,
        "event_id": ev.event_id,
        "status": ev.status.value,
        "producer": ev.producer,
        "row_count": ev.row_count,
        "model": _model(ev),
        "run": _run_json(node.run),
        "children": [_node_json(c) for c in node.children],
    }


def why(
    job: Annotated[str, typer.Argument(help="The job")],
    partition: Annotated[str | None, typer.Option("--partition", "-p", help="Its partition")] = None,
    spec: SpecOpt = "pipeline.yaml",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON value, the UI's /api/why")] = False,
) -> None:
    """Why a job partition is not running: missing inputs, a retry due, a full pool, a dead owner."""
    from coordinator import waiting

    console = Console(stderr=as_json)
    loaded = load_or_exit(spec, console)
    if job not in loaded.jobs:
        raise typer.BadParameter(f"unknown job {job!r}: one of {', '.join(loaded.jobs)}")
    if (partition is None) != (loaded.job_partitioning(job) == "none"):
        raise typer.BadParameter(
            f"{job} is {'not ' if partition else ''}partitioned: "
            f"{'leave out' if partition else 'give'} --partition"
        )
    with state_store(cli_settings()) as store, store.begin() as tx:
        found = waiting.explain(tx, loaded, job, partition)
    if as_json:
        typer.echo(json.dumps(found, ensure_ascii=False, default=str))
        return
    run = f" (run {found['run_id'][:12]})" if found["run_id"] else ""
    console.print(f"{job}[{partition or ''}] is {found['state']}{run}", highlight=False)
    for reason in found["reasons"]:
        console.print(f"  - {reason['text']}", highlight=False, markup=False)
    if found["next"]:
        console.print(
            f"next: {found['next']['command']}  ({found['next']['why']})", highlight=False, markup=False
        )


def register(app: typer.Typer) -> None:
    app.command("show")(show)
    app.command("lineage")(lineage)
    app.command("why")(why)
