"""`coord retry`, `rerun`, `backfill` and `cancel`: resume after a fix without redoing work.

    coord retry RUN_ID                           a failed, blocked or cancelled run gets a fresh
                                                 retry budget
    coord rerun JOB --partition P [--spec F]     a new run of one job partition on its latest inputs
    coord backfill JOB --from P1 --to P2 [--spec F] [--no-wait]
                                                 runs for every partition whose inputs are complete,
                                                 executed within the pools, with a progress bar
    coord cancel RUN_ID                          stop a run's job and mark it cancelled
`retry` and `rerun` only queue the run: the running `coord run` service launches it. `backfill`
beside a running service (a live lease in the store) queues its runs for the service and
follows them; with none running, it executes them itself under a lease of its own — either
way nothing it started is left behind when it exits (a lease released with runs left is
adopted at once).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from coordinator import operations, runview
from coordinator.cli.context import cli_settings, state_store
from coordinator.cli.run import SpecOpt, load_or_exit
from coordinator.errors import CoordinatorError
from coordinator.settings import Settings
from coordinator.store import audit
from coordinator.store.store import StateStore

TERMINAL = ("succeeded", "failed", "blocked", "cancelled")


def _store(settings: Settings) -> StateStore:
    return state_store(settings)  # nothing run here yet: one clear line


def _actor() -> str:
    """Who acts from the command line, for the audit (store/audit.py)."""
    import getpass

    return f"cli:{getpass.getuser()}"


def retry(run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix)")]) -> None:
    """Retry a failed or blocked run; downstream continues once it succeeds."""
    console = Console()
    try:
        with _store(cli_settings()) as store:
            run = operations.retry(store, run_id)
            audit.record(store, _actor(), "retry", run_id=run.run_id, job=run.job, partition=run.partition)
            with store.begin() as tx:
                changed = runview.changed_inputs(tx, run)
    except CoordinatorError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"run {run.run_id} ({run.job}[{run.partition}]) is ready again; "
        f"up to {run.max_attempts - run.attempt} more attempt(s)"
    )
    if changed:  # the retry reuses the inputs the run consumed, not the newer (maybe fixed) ones
        latest = runview.rerun_command(run)
        names = ", ".join(changed)
        console.print(f"note: {names} changed since; to run on the latest: {latest}", highlight=False)


def rerun(
    job: Annotated[str, typer.Argument(help="The job to run again")],
    spec: SpecOpt = "pipeline.yaml",
    partition: Annotated[
        str | None, typer.Option("--partition", "-p", help="The partition (none: an unpartitioned job)")
    ] = None,
) -> None:
    """Run one job partition again on its latest input versions."""
    console = Console()
    loaded = load_or_exit(spec, console)
    if job not in loaded.jobs:
        console.print(f"[red]error[/red]: unknown job {job!r}")
        raise typer.Exit(1)
    problem = operations.partition_problem(loaded, job, partition)
    if problem is not None:
        console.print(f"[red]error[/red]: {problem.detail}", highlight=False)
        raise typer.Exit(1)
    with _store(cli_settings()) as store:
        result = operations.rerun(store, loaded, job, partition)
        for run in result.created:
            audit.record(store, _actor(), "rerun", run_id=run.run_id, job=job, partition=run.partition)
    for p, missing in result.waiting:
        console.print(f"{job}[{p}] cannot run: waiting for {', '.join(missing)}")
        raise typer.Exit(1)
    for run in result.created:
        console.print(f"queued run {run.run_id} for {job}[{partition}]")


def backfill(
    job: Annotated[str, typer.Argument(help="The job whose partitions to run")],
    first: Annotated[str, typer.Option("--from", help="First partition")],
    last: Annotated[str, typer.Option("--to", help="Last partition (inclusive)")],
    spec: SpecOpt = "pipeline.yaml",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Execute the runs here")] = True,
) -> None:
    """Queue runs of JOB for a partition range whose inputs are complete, and execute them."""
    from coordinator.service import Service

    console = Console()
    loaded = load_or_exit(spec, console)
    if job not in loaded.jobs:
        console.print(f"[red]error[/red]: unknown job {job!r}")
        raise typer.Exit(1)
    try:
        keys = operations.partition_range(loaded, job, first, last)
    except ValueError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    with Service(loaded, cli_settings(), log_runs=False) as service:
        store = service.store
        result = operations.backfill(store, loaded, job, keys)
        for run in result.created:
            audit.record(store, _actor(), "backfill", run_id=run.run_id, job=job, partition=run.partition)
        for p, missing in result.waiting:
            console.print(
                f"skipped {job}[{p}]: waiting for {', '.join(missing)}", highlight=False, soft_wrap=True
            )
        console.print(f"queued {len(result.created)} run(s) of {job}")
        if not wait or not result.created:
            return
        ids = {r.run_id for r in result.created}
        serving = operations.live_instances(store)
        if serving:
            console.print(f"the running service executes them ({', '.join(serving)})", highlight=False)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"backfill {job}", total=len(ids))
            checked = [0.0]

            def done() -> bool:
                if time.monotonic() - checked[0] < 0.25:
                    return False
                checked[0] = time.monotonic()
                with store.begin() as tx:
                    states = [tx.get_run(i).state for i in ids]
                progress.update(task, completed=sum(s in TERMINAL for s in states))
                return all(s in TERMINAL for s in states)

            if serving:
                while not done():
                    time.sleep(0.05)
            else:
                service.run(consume=False, stop=done)
        with store.begin() as tx:
            runs = [tx.get_run(i) for i in ids]
        bad = [r for r in runs if r.state != "succeeded"]
        console.print(
            f"{len(runs) - len(bad)} succeeded, {len(bad)} did not"
            + "".join(f"\n  {r.run_id} {r.job}[{r.partition}] {r.state}: {r.error}" for r in bad)
        )
        if bad:
            raise typer.Exit(1)


def cancel(run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix)")]) -> None:
    """Stop a run's job (its process group, or its Spark application) and mark it cancelled."""
    import socket

    from coordinator.launchers.registry import build_launcher

    console = Console()
    settings = cli_settings()
    try:
        with _store(settings) as store:
            run = operations.cancel(
                store, run_id, lambda kind: build_launcher(kind, settings), socket.gethostname()
            )
            audit.record(store, _actor(), "cancel", run_id=run.run_id, job=run.job, partition=run.partition)
    except CoordinatorError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"run {run.run_id} ({run.job}[{run.partition}]) cancelled; downstream waits "
        "(coord retry starts it again)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("retry")(retry)
    app.command("rerun")(rerun)
    app.command("backfill")(backfill)
    app.command("cancel")(cancel)
