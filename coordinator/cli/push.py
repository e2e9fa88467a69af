"""`coord push JOB --partition P`: run one reverse-ETL push by hand, with a progress bar.

    coord push push_scores --partition 2024-05-01 [--spec pipeline.yaml] [--dry-run] [--full]

The job's `settings:` come from the spec; a source `{input: D}` is read from the location of
D's latest completion recorded in the state store for that partition (or `--location`). The
push shares its state (diff hashes) with the coordinator's runs of the same job. `--dry-run`
prints the inserts, updates and deletes it would make and writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from coordinator.cli.context import cli_settings
from coordinator.cli.run import SpecOpt, load_or_exit
from coordinator.errors import CoordinatorError
from coordinator.kinds.reverse_etl import PushSettings
from coordinator.settings import Settings

if TYPE_CHECKING:
    from coordinator.push.engine import PushResult


def _input_location(settings: Settings, dataset: str, partition: str | None) -> str | None:
    from coordinator.store.store import StateStore

    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        versions = tx.latest_versions(dataset)
    exact = [v for v in versions if v.partition == partition]
    chosen = exact or [v for v in versions if v.partition is None]
    return chosen[-1].location if chosen else None


def _show(console: Console, result: PushResult) -> None:
    if result.dry_run:
        for line in result.plan:
            console.print(line, highlight=False, soft_wrap=True)
    table = Table(
        title=f"{'dry run: ' if result.dry_run else ''}{'full' if result.full else 'diff'} push "
        f"({result.reason})"
    )
    for name in ("read", *result.counts()):
        table.add_column(name, justify="right")
    table.add_row(str(result.rows_read), *(str(v) for v in result.counts().values()))
    console.print(table)
    for reason, n in result.reject_reasons.items():
        console.print(f"rejected {n}: {reason}", highlight=False)
    if result.rejects_path:
        console.print(f"rejected rows written to {result.rejects_path}")
    console.print(f"{result.seconds:.2f} s")


def push_command(
    job: Annotated[str, typer.Argument(help="A reverse_etl job of the spec")],
    spec: SpecOpt = "pipeline.yaml",
    partition: Annotated[
        str | None, typer.Option("--partition", "-p", help="The partition (none: an unpartitioned job)")
    ] = None,
    location: Annotated[
        str | None, typer.Option(help="Push from this Parquet path instead of the input's")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; write nothing")
    ] = False,
    full: Annotated[bool, typer.Option("--full", help="Ignore the saved hashes: compare every row")] = False,
) -> None:
    """Push one partition of a reverse_etl job now (only rows changed since the last push)."""
    from coordinator.push.engine import STEPS  # the push engine (pandas, Arrow) only when pushing
    from coordinator.push.run import push_job, resolve_source

    console = Console()
    loaded = load_or_exit(spec, console)
    if job not in loaded.jobs or loaded.jobs[job].kind != "reverse_etl":
        console.print(f"[red]error[/red]: {job!r} is not a reverse_etl job of {spec}")
        raise typer.Exit(1)
    settings = cli_settings()
    try:
        cfg = PushSettings.model_validate(loaded.jobs[job].settings)
        if cfg.source.input and location is None:
            location = _input_location(settings, cfg.source.input, partition)
        source = resolve_source(cfg, partition, location)
        with Progress(
            TextColumn("{task.description:>6}"),
            BarColumn(),
            TextColumn("{task.fields[rows]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("read", total=len(STEPS), rows="")

            def progress(step: str, done: int, total: int) -> None:
                finished = STEPS.index(step) + (1 if total and done >= total else 0)
                bar.update(task, description=step, completed=finished, rows=f"{done:,}/{total:,} rows")

            result = push_job(
                cfg,
                source,
                job=job,
                state_dir=settings.home / "push",
                rejects_path=settings.home / "push" / f"{job}.rejects.jsonl",
                dry_run=dry_run,
                full=full,
                progress=progress,
                kafka_bootstrap=settings.kafka_bootstrap_servers,
            )
    except (CoordinatorError, ValueError) as exc:  # one line, whatever the driver's message spans
        message = " ".join(str(exc).split())
        console.print(f"[red]error[/red]: {type(exc).__name__}: {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    _show(console, result)


def register(app: typer.Typer) -> None:
    app.command("push")(push_command)
