"""`coord prune`: one whole retention pass now, outside the loop's slices.

coord prune [--spec pipeline.yaml] [--json]
    deletes superseded finished runs older than COORD_RETENTION_RUNS_DAYS (with their attempts),
    attempts older than COORD_RETENTION_ATTEMPTS_DAYS (each run's current one stays) and events
    older than COORD_RETENTION_EVENTS_DAYS that neither are a current version nor were read or
    made by a kept run (coordinator/store/retention.py says what is kept and why). The spec
    names each job's outputs, which tells which runs produced the current versions. Safe beside
    a serving coordinator: every delete re-checks its conditions in the same statement.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer
from rich.console import Console

from coordinator.cli.context import cli_settings, state_store
from coordinator.cli.run import SpecOpt, load_or_exit


def prune(
    spec: SpecOpt = "pipeline.yaml",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object of the counts")] = False,
) -> None:
    """Delete old history now (COORD_RETENTION_*_DAYS); the lineage of what is live stays."""
    from coordinator.retention import Pruner

    console = Console(stderr=as_json)
    loaded = load_or_exit(spec, console)
    settings = cli_settings()
    with state_store(settings) as store:
        stats = Pruner(store, loaded, settings).run_pass()
    if as_json:
        typer.echo(json.dumps({**dataclasses.asdict(stats), "seconds": round(stats.seconds, 3)}))
        return
    console.print(
        f"pruned {stats.runs} runs, {stats.attempts} attempts and {stats.events} events "
        f"({stats.examined} rows looked at, {stats.slices} slices, {stats.seconds:.1f} s)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("prune")(prune)
