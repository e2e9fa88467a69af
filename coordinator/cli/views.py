"""`coord runs` and `coord status`: what ran, what runs, and what waits for what.

coord runs [--job J] [--state S] [--limit N]
coord status [--spec F] [--last N]     datasets × partitions, and the job partitions waiting
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
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


def runs(
    job: Annotated[str | None, typer.Option("--job", "-j")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="ready, running, succeeded, failed, ...")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 50,
) -> None:
    """The latest runs, newest first."""
    from coordinator.lease import run_lease
    from coordinator.secrets import Masker
    from coordinator.store import leases as L

    settings = cli_settings()
    masker = Masker.of(settings)  # an error may quote a secret of the settings
    with state_store(settings) as store, store.begin() as tx:
        rows = tx.list_runs(job=job, states=[state] if state else None, limit=limit)
        leases = L.every(tx)
    now = datetime.now(UTC).timestamp()
    table = Table(title=f"runs ({len(rows)})")
    for col in ("run", "job", "partition", "state", "attempt", "created", "owner", "lease", "age", "error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r.run_id,
            r.job,
            r.partition or "",
            f"{MARKS.get(r.state, '')} {r.state}",
            f"{r.attempt}/{r.max_attempts}",
            _when(r.created_at),
            r.owner or "",
            run_lease(r.owner, leases, now),
            _age(r.started_at or r.created_at),
            (masker.text(r.error) or "")[:200],
        )
    Console().print(table)


def status(spec: SpecOpt = "pipeline.yaml", last: Annotated[int, typer.Option("--last")] = 7) -> None:
    """Datasets × their latest partitions (✓ complete, or the producing run's state), then waits."""
    console = Console()
    loaded = load_or_exit(spec, console)
    from coordinator.lease import orphaned, run_lease
    from coordinator.staleness import stale_partitions
    from coordinator.store import leases as L

    with state_store(cli_settings()) as store, store.begin() as tx:
        versions = tx.latest_versions()
        recent = tx.list_runs(limit=5000)
        leases = L.every(tx)
        stale = stale_partitions(tx, loaded.jobs)
    stale_at = {(s.job, s.partition) for s in stale}
    have = {(v.dataset, v.partition) for v in versions}
    run_state: dict[tuple[str, str | None], str] = {}
    for r in reversed(recent):  # oldest first, so the newest run's state wins
        run_state[(r.job, r.partition)] = r.state
    parts = sorted(
        {v.partition for v in versions if v.partition} | {r.partition for r in recent if r.partition}
    )
    parts = parts[-last:]
    datasets = sorted(set(loaded.datasets) | set(loaded.producers) | {v.dataset for v in versions})
    table = Table(title="datasets × partitions  (✓ complete ↻ stale ✗ failed ⊘ blocked ▶ running … ready)")
    table.add_column("dataset")
    table.add_column("fresh")  # age of the dataset's newest complete version
    newest: dict[str, float] = {}
    for v in versions:
        newest[v.dataset] = max(newest.get(v.dataset, 0.0), v.produced_at)
    for p in parts:
        table.add_column(p)
    table.add_column("unpartitioned")
    for ds in datasets:
        producer = loaded.producers.get(ds)
        cells = []
        for p in [*parts, None]:
            state = run_state.get((producer, p)) if producer else None
            if state and state != "succeeded":
                cells.append(MARKS.get(state, state))
            elif (producer, p) in stale_at:
                cells.append(MARKS["stale"])
            else:
                cells.append(MARKS["succeeded"] if (ds, p) in have else "")
        table.add_row(ds, _age(newest.get(ds)), *cells)
    console.print(table)
    snap = readiness.Snapshot(latest={(v.dataset, v.partition): v for v in versions})
    waits = []
    for job in loaded.jobs:
        for p in [*parts, None]:
            if (job, p) in run_state:
                continue
            try:
                missing = missing_inputs(loaded, snap, job, p)
            except TypeError:
                continue
            needed = readiness.needed(loaded, job, p)
            if (
                missing
                and len(missing) < len(needed)
                and (p is None) == (loaded.job_partitioning(job) == "none")
            ):
                waits.append(
                    f"{job}[{p}] waits for {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}"
                )
    for line in waits:
        console.print(line, highlight=False)
    for s in stale:
        console.print(f"{s.job}[{s.partition}] is stale: {s.describe()}", highlight=False)
    if not waits:
        console.print("nothing is waiting on a partial set of inputs")
    now = datetime.now(UTC).timestamp()
    for r in orphaned(recent, leases, now):
        console.print(
            f"{r.job}[{r.partition}] {r.state} under {r.owner} ({run_lease(r.owner, leases, now)}), "
            f"started {_age(r.started_at)} ago: its instance is gone, a live instance adopts it",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)
    app.command("status")(status)
