"""`coord demo`: the "website scores" journey end to end, on whatever the settings point at."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer
from rich.console import Console

from coordinator.demo.settings import DEFAULT_HOME, DemoOptions
from coordinator.errors import CoordinatorError


def demo(
    home: Path = typer.Option(DEFAULT_HOME, help="folder for the demo's data, state and databases"),
    days: int = typer.Option(3, min=1, max=30, help="days the app exports (the last is fixed)"),
    users: int = typer.Option(2000, min=10, help="website users in the raw data"),
    seed: int = typer.Option(7, help="seed of the raw data; another seed is changed data"),
    timeout: float = typer.Option(1800.0, help="give up after this many seconds"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
) -> None:
    """The app exports days of data; dlt loads them, dbt builds the reporting tables, Spark the
    features, the MLflow model scores them and the push writes the scores into the product
    database — each step started by the previous step's completion events."""
    from coordinator.demo import run_demo

    options = DemoOptions(home=home, days=days, users=users, seed=seed, timeout_s=timeout)
    # With --json the progress goes to stderr so that stdout holds the one JSON object.
    console = Console(stderr=True) if as_json else Console()
    try:
        # Libraries that print (MLflow announces a registered model) must not spoil the JSON.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            summary = run_demo(options, console=console, live=console.is_terminal)
    except CoordinatorError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(summary.model_dump_json() + "\n")
    else:
        summary.print(console)
    raise typer.Exit(0 if summary.succeeded else 1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
