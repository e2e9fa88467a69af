"""`coord runs` and `coord status`: what ran, what runs, and what waits for what.

coord runs [--job J] [--state S]... [-p P | --from P --to P] [--since T] [--until T]
           [--limit N] [--offset N] [--json]
coord status [--spec F] [--last N] [--json]   datasets × partitions, and the job partitions waiting

`--json` prints one JSON value: runs {"total", "offset", "runs": [run]} with each run as the UI's
/api/runs gives it (runview.basic, plus lease); status {"partitions", "datasets": [{"dataset",
"producer", "fresh_s", "newest_at", "cells": {partition or "": complete | stale | a run state}}],
"waiting", "stale", "orphaned"}. Exit codes: 0 shown, 1 an error (one line), 2 a bad option.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from coordinator import readiness
from coordinator.cli.context import cli_settings, state_store
from coordinator.cli.run import SpecOpt, load_or_exit
from coordinator.operations import missing_inputs

MARKS = {
    "succeeded": "[green]✓[/green]",
    "ready": "[yellow]…[/yellow]",
    "starting": "[cyan]▶[/cyan]",
    "running": "[cyan]▶[/cyan]",
    "failed": "[red]✗[/red]",
    "blocked": "[red]⊘[/red]",
    "stale": "[magenta]↻[/magenta]",  # built on a version since superseded (staleness.py)
    "superseded": "[dim]superseded[/dim]",  # a failure a newer run of its partition replaced
    "cancelled": "[red]∅[/red]",
}


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _age(ts: float | None) -> str:
    if not ts:
        return ""
    s = max(0, int(datetime.now(UTC).timestamp() - ts))
    for unit, size, below in (("s", 1, 120), ("m", 60, 7200), ("h", 3600, 172800)):
        if s < below:
            return f"{s // size}{unit}"
    return f"{s // 86400}d"


WIDE = 120  # columns from which `coord runs` also shows start time, owner and lease


def _validate_states(states: list[str] | None) -> list[str]:
    from coordinator.runview import RUN_STATES

    for s in states or []:
        if s not in RUN_STATES:
            raise typer.BadParameter(f"{s!r} is not a run state: one of {', '.join(RUN_STATES)}")
    return states or []


def _time(value: str | None) -> str | None:
    """A valid ISO time, else a usage error naming it (checked here so exit code 2 says so)."""
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not an ISO time such as 2024-03-01T06:00") from None
    return value


def _stamp(value: str | None) -> float | None:
    if value is None:
        return None
    at = datetime.fromisoformat(value)
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _print_json(value: object) -> None:
    """One JSON value on stdout, nothing else (a script's `| jq`)."""
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON value (the shapes: README, CLI)")]


def runs(
    job: Annotated[str | None, typer.Option("--job", "-j", help="Only this job's runs")] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only runs in this state (repeatable): ready, starting, running, "
            "succeeded, failed, blocked, cancelled",
            callback=_validate_states,
        ),
    ] = None,
    partition: Annotated[str | None, typer.Option("--partition", "-p", help="Only this partition")] = None,
    first: Annotated[str | None, typer.Option("--from", help="Partitions from this key on")] = None,
    last: Annotated[str | None, typer.Option("--to", help="Partitions up to this key")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs to list")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many newest runs")] = 0,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Created at or after (ISO time, UTC unless it says)", callback=_time),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Created before (ISO time)", callback=_time)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The latest runs, newest first; a failure a newer run of its partition replaced is superseded."""
    from coordinator import runview
    from coordinator.lease import run_lease
    from coordinator.secrets import Masker
    from coordinator.store import leases as L

    if first and last and first > last:
        raise typer.BadParameter(f"--from {first} is after --to {last}")
    if partition is not None:
        first = last = partition
    settings = cli_settings()
    masker = Masker.of(settings)  # an error may quote a secret of the settings
    with state_store(settings) as store, store.begin() as tx:
        rows, total = tx.runs_page(
            job=job,
            states=state,
            partition_from=first,
            partition_to=last,
            since=_stamp(since),
            until=_stamp(until),
            offset=offset,
            limit=limit,
        )
        superseded = tx.superseding(rows)
        leases = L.every(tx)
    now = datetime.now(UTC).timestamp()
    shown = [
        {
            **runview.basic(r, superseded.get(r.run_id), now),
            "error": masker.text(r.error),
            "lease": run_lease(r.owner, leases, now),
        }
        for r in rows
    ]
    if as_json:
        _print_json({"total": total, "offset": offset, "runs": shown})
        return
    console = Console()
    wide = console.width >= WIDE  # an 80-column terminal gets the columns that say what happened
    table = Table(
        title=f"runs {offset + 1 if rows else 0}-{offset + len(rows)} of {total}", box=box.SIMPLE_HEAD
    )
    columns = ["run", "job", "partition", "state", "try", *(["started"] if wide else []), "took"]
    for col in [*columns, *(["owner"] if wide else [])]:
        table.add_column(col, no_wrap=col not in ("job", "owner"), overflow="fold")
    if wide:
        table.add_column("error", overflow="fold", ratio=1, min_width=12)
    for r in shown:
        n = r["try"]
        cells = [
            r["run_id"][:12],
            r["job"],
            r["partition"] or "",
            "[dim]superseded[/dim]" if r["superseded_by"] else f"{MARKS.get(r['state'], '')} {r['state']}",
            f"{n['n']}/{n['of']}" if n["n"] else "-",
            *([_when(r["started_at"])[5:16]] if wide else []),
            _took(r["duration_s"]),
            *([f"{r['owner']} {r['lease']}" if r["owner"] else "", (r["error"] or "")[:200]] if wide else []),
        ]
        table.add_row(*cells)
    console.print(table)
    if not wide:  # the errors as free text under the table: the columns keep their names whole
        for r in shown:
            if r["error"]:
                console.print(f"{r['run_id'][:12]}  {r['error'][:200]}", highlight=False, markup=False)
        console.print("(started, owner and lease: a wider terminal, or --json)", highlight=False)


def _took(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds < 120 else _age(datetime.now(UTC).timestamp() - seconds)


def status(
    spec: SpecOpt = "pipeline.yaml",
    last: Annotated[int, typer.Option("--last", min=1, help="How many of the newest partitions to show")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Datasets × their latest partitions (✓ complete, or the producing run's state), then waits."""
    console = Console(stderr=as_json)
    loaded = load_or_exit(spec, console)
    found = _status(loaded, last)
    if as_json:
        _print_json(found)
        return
    console.print(_grid(found, console.width), highlight=False)
    shown = _fitting(found, console.width)
    if len(shown) < len(found["partitions"]):
        older = len(found["partitions"]) - len(shown)
        console.print(f"({older} older partition(s) left out to fit: a wider terminal, or --json)")
    for w in found["waiting"]:
        missing = w["missing"]
        more = " …" if len(missing) > 5 else ""
        console.print(
            f"{w['job']}[{w['partition']}] waits for {', '.join(missing[:5])}{more}", highlight=False
        )
    stale = found["stale"]
    shown = [s for s in stale if s["partition"] is None or s["partition"] in found["partitions"]]
    for s in shown:  # those of the table's partitions; the rest counted (a moved model: many)
        console.print(f"{s['job']}[{s['partition']}] is stale: {s['describe']}", highlight=False)
    if len(shown) < len(stale):
        console.print(f"… and {len(stale) - len(shown)} stale in older partitions (--json lists them)")
    if not found["waiting"]:
        console.print("nothing is waiting on a partial set of inputs")
    for r in found["orphaned"]:
        console.print(
            f"{r['job']}[{r['partition']}] {r['state']} under {r['owner']} ({r['lease']}), "
            f"started {_age(r['started_at'])} ago: its instance is gone, a live instance adopts it",
            highlight=False,
        )


def _fitting(found: dict, width: int) -> list[str]:
    """The newest partitions whose columns fit `width` beside the dataset names (never fewer than 1)."""
    name_w = max((len(d["dataset"]) for d in found["datasets"]), default=7)
    unpartitioned = any("" in d["cells"] for d in found["datasets"])
    room = width - (name_w + 3) - 8 - (15 if unpartitioned else 0)
    parts = found["partitions"]
    cell_w = max((len(_short(parts, p)) for p in parts), default=5) + 3
    return parts[-max(1, room // cell_w) :] if parts else []


def _short(parts: list[str], p: str) -> str:
    """A partition key without the prefix every shown key shares up to a separator (2024-03-)."""
    prefix = os.path.commonprefix(parts) if len(parts) > 1 else ""
    cut = max(prefix.rfind("-"), prefix.rfind("T"))
    return p[cut + 1 :] if cut > 0 else p


def _grid(found: dict, width: int) -> Table:
    parts = _fitting(found, width)
    common = parts[0][: len(parts[0]) - len(_short(parts, parts[0]))] if parts else ""
    title = f"datasets × partitions {common}…  (✓ complete ↻ stale ✗ failed ⊘ blocked ▶ running … ready)"
    table = Table(title=title if common else title.replace(" …", ""), box=box.SIMPLE_HEAD)
    table.add_column("dataset", no_wrap=True)
    table.add_column("fresh", no_wrap=True)  # age of the dataset's newest complete version
    for p in parts:
        table.add_column(_short(parts, p), no_wrap=True)
    unpartitioned = any("" in d["cells"] for d in found["datasets"])
    if unpartitioned:
        table.add_column("unpartitioned", no_wrap=True)
    for row in found["datasets"]:
        cells = [_mark(row["cells"].get(p, "")) for p in [*parts, *([""] if unpartitioned else [])]]
        table.add_row(row["dataset"], _age(row["newest_at"]), *cells)
    return table


def _mark(cell: str) -> str:
    return MARKS["succeeded"] if cell == "complete" else MARKS.get(cell, cell)


def _status(loaded, last: int) -> dict:
    """What `coord status` shows, as data: cells hold complete, stale, or the producing run's state."""
    from coordinator.lease import orphaned, run_lease
    from coordinator.staleness import stale_partitions
    from coordinator.store import leases as L

    with state_store(cli_settings()) as store, store.begin() as tx:
        versions = tx.latest_versions()
        recent = tx.list_runs(limit=5000)
        leases = L.every(tx)
        stale = stale_partitions(tx, loaded.jobs)
        superseded = tx.superseding(recent)
    stale_at = {(s.job, s.partition) for s in stale}
    have = {(v.dataset, v.partition) for v in versions}
    run_state: dict[tuple[str, str | None], str] = {}
    for r in reversed(recent):  # oldest first, so the newest run's state wins
        run_state[(r.job, r.partition)] = "superseded" if r.run_id in superseded else r.state
    parts = sorted(
        {v.partition for v in versions if v.partition} | {r.partition for r in recent if r.partition}
    )[-last:]
    newest: dict[str, float] = {}
    for v in versions:
        newest[v.dataset] = max(newest.get(v.dataset, 0.0), v.produced_at)
    now = datetime.now(UTC).timestamp()
    datasets = []
    for ds in sorted(set(loaded.datasets) | set(loaded.producers) | {v.dataset for v in versions}):
        producer = loaded.producers.get(ds)
        cells = {}
        for p in [*parts, None]:
            state = run_state.get((producer, p)) if producer else None
            if state and state != "succeeded":
                cells[p or ""] = state
            elif (producer, p) in stale_at:
                cells[p or ""] = "stale"
            elif (ds, p) in have:
                cells[p or ""] = "complete"
        fresh = round(now - newest[ds]) if ds in newest else None
        datasets.append(
            {
                "dataset": ds,
                "producer": producer,
                "fresh_s": fresh,
                "newest_at": newest.get(ds),
                "cells": cells,
            }
        )
    snap = readiness.Snapshot(latest={(v.dataset, v.partition): v for v in versions})
    waiting = []
    for job in loaded.jobs:
        for p in [*parts, None]:
            if (job, p) in run_state or (p is None) != (loaded.job_partitioning(job) == "none"):
                continue
            try:
                missing = missing_inputs(loaded, snap, job, p)
            except TypeError:
                continue
            if missing and len(missing) < len(readiness.needed(loaded, job, p)):
                waiting.append({"job": job, "partition": p, "missing": missing})
    gone = [
        {
            "run_id": r.run_id,
            "job": r.job,
            "partition": r.partition,
            "state": r.state,
            "owner": r.owner,
            "lease": run_lease(r.owner, leases, now),
            "started_at": r.started_at,
        }
        for r in orphaned(recent, leases, now)
    ]
    return {
        "partitions": parts,
        "datasets": datasets,
        "waiting": waiting,
        "stale": [{**s.as_json(), "describe": s.describe()} for s in stale],
        "orphaned": gone,
    }


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)
    app.command("status")(status)
