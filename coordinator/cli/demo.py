"""`coord demo`: the "website scores" journey end to end, on whatever the settings point at."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console

from coordinator.demo.settings import DEFAULT_HOME, DemoOptions, demo_settings
from coordinator.errors import CoordinatorError


def serve_command(options: DemoOptions) -> str:
    """The command that serves the demo's UI on what the demo left: its home, its spec and what
    the spec interpolates, reads without a token (as the demo's own settings). The product
    database is named only when the environment does not (then it is the home's SQLite file);
    the rest of the environment (COORD_BUS, COORD_STATE_URL...) is the shell's, as it was here."""
    env = {"COORD_ANONYMOUS_READS": "true", "LAKE": str(options.lake), "APP_EXPORT": str(options.app_export)}
    if not os.environ.get("COORD_PRODUCT_DB_URL"):
        env["COORD_PRODUCT_DB_URL"] = demo_settings(options).resolved_product_db_url()
    home, spec = str(options.home.resolve()), str(options.spec_path.resolve())
    words = [f"{name}={shlex.quote(value)}" for name, value in env.items()]
    return " ".join([*words, *map(shlex.quote, ["coord", "serve", "--home", home, "--spec", spec])])


def demo(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None,
        help=f"folder for the demo's data, state and databases (default: coord --home, else {DEFAULT_HOME})",
        show_default=False,
    ),
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

    home = home or ctx.find_root().params.get("home") or DEFAULT_HOME  # `coord --home H demo` too
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
    # The last line, on stderr with --json: how to look at all of it in the web UI.
    settings = demo_settings(options)
    console.print(
        f"serve its UI on http://{settings.api_host}:{settings.api_port}/ui:\n  {serve_command(options)}",
        soft_wrap=True,
        highlight=False,
    )
    raise typer.Exit(0 if summary.succeeded else 1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
