"""`coord model …`: the MLflow registry as an input of the pipeline.

    coord model promote churn 4                 # move churn@champion to version 4 and publish it
    coord model show churn                      # versions, aliases
    coord model watch churn@champion --once     # publish an event if the alias moved since last seen

Both `promote` and `watch` publish a completion event for dataset `mlflow.models.NAME`
(attributes model_version, alias, model_uri); score jobs that list it as an input re-score.
"""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

from coordinator.cli.context import cli_settings
from coordinator.errors import CoordinatorError
from coordinator.settings import Settings

model_app = typer.Typer(no_args_is_help=True, help=__doc__)
TRACKING = typer.Option(None, "--tracking-uri", help="MLflow tracking/registry URI (default: settings)")


def _publisher(settings: Settings):
    from coordinator.bus.factory import open_bus
    from coordinator.publish import Publisher

    return Publisher(open_bus(settings), settings)


def _fail(console: Console, exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(2)


@model_app.command("promote")
def promote(
    name: str = typer.Argument(..., help="registered model name"),
    version: str = typer.Argument(..., help="the version to promote"),
    alias: str = typer.Option("champion", help="the alias to move"),
    tracking_uri: str | None = TRACKING,
) -> None:
    """Point ALIAS of model NAME at VERSION and publish the change as a completion event."""
    from coordinator.scoring import registry
    from coordinator.scoring.watching import recorded_announcements

    settings, console = cli_settings(), Console()
    uri = tracking_uri or settings.resolved_mlflow_uri()
    try:
        with _publisher(settings) as publisher, recorded_announcements(settings) as announced:
            before, event = registry.promote(
                uri, name, version, publisher, alias=alias, state_path=registry.state_path_for(settings.home),
                announced=announced,  # the id coord serve's poller gives the same move
            )
    except CoordinatorError as exc:
        raise _fail(console, exc) from None
    console.print(
        f"{name}@{alias}: version {before or '(none)'} → {version}; "
        f"published {event.dataset} (event {event.event_id})"
    )


@model_app.command("show")
def show(
    name: str = typer.Argument(..., help="registered model name"), tracking_uri: str | None = TRACKING
) -> None:
    """List the versions of model NAME with their aliases."""
    from mlflow.exceptions import MlflowException

    from coordinator.scoring.resolve import registry_client

    settings, console = cli_settings(), Console()
    uri = tracking_uri or settings.resolved_mlflow_uri()
    client = registry_client(uri)
    try:
        versions = client.search_model_versions(f"name = '{name}'")
        # search results leave aliases empty on some stores; the registered model has them all
        aliases: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
    except MlflowException as exc:
        raise _fail(console, exc) from None
    table = Table(title=f"{name} in {uri}")
    for column in ("version", "aliases", "run", "created"):
        table.add_column(column)
    for v in sorted(versions, key=lambda v: int(v.version)):
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.creation_timestamp / 1000))
        names = ", ".join(sorted(aliases.get(str(v.version), [])))
        table.add_row(str(v.version), names, (v.run_id or "")[:12], created)
    console.print(table)


@model_app.command("watch")
def watch(
    models: list[str] = typer.Argument(..., help="NAME@ALIAS to watch (repeatable)"),
    interval: float = typer.Option(30.0, min=0.1, help="seconds between polls"),
    once: bool = typer.Option(False, help="poll once and exit"),
    count: int | None = typer.Option(None, min=1, help="stop after this many polls"),
    tracking_uri: str | None = TRACKING,
) -> None:
    """Poll the registry and publish an event whenever a watched alias moves."""
    from coordinator.scoring import registry
    from coordinator.scoring.resolve import parse_ref

    settings, console = cli_settings(), Console()
    uri = tracking_uri or settings.resolved_mlflow_uri()
    try:
        refs = [parse_ref(m) for m in models]
        watched = [(r.name, r.alias) for r in refs if r.alias]
        if len(watched) != len(refs):
            raise typer.BadParameter("give each model as NAME@ALIAS")
        polls = 1 if once else count
        with _publisher(settings) as publisher:
            poller = registry.RegistryPoller(
                uri, watched, publisher, state_path=registry.state_path_for(settings.home)
            )
            done = 0
            while polls is None or done < polls:
                for line in registry.describe_moves(poller.poll_once()):
                    console.print(f"published {line}")
                done += 1
                if polls is None or done < polls:
                    time.sleep(interval)
    except CoordinatorError as exc:
        raise _fail(console, exc) from None


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model", help="The MLflow registry as a pipeline input.")
