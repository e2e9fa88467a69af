"""`coord publish`: put completion events on the bus from a shell, a scheduler or a CI step.

    coord publish DATASET --partition P [--status failed] [--rows N] [--location URI]
                  [--columns-from FILE] [--attr k=v ...]
    coord publish --from-dbt target/ [--partition P]

Prints the id of every event published; exits 1 with the reason when an event is invalid or
the bus cannot take it (nothing is half-published: events are validated before any is sent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from coordinator.errors import BusError, EventError
from coordinator.events import CompletionEvent, Status


def _attributes(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--attr")
        out[key] = value
    return out


def read_columns(path: Path) -> list[dict[str, Any]]:
    """Columns from a JSON or YAML file: a list of {name, type, nullable?} or a {name: type} mapping."""
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--columns-from") from None
    if isinstance(data, dict) and "columns" in data:
        data = data["columns"]
    if isinstance(data, dict):
        return [{"name": str(k), "type": str(v)} for k, v in data.items()]
    if isinstance(data, list) and all(isinstance(c, dict) for c in data):
        return data
    raise typer.BadParameter(
        f"{path}: expected a list of columns or a name: type mapping", param_hint="--columns-from"
    )


def publish_command(
    dataset: Annotated[str | None, typer.Argument(help="Dataset name, e.g. fivetran.app.users")] = None,
    partition: Annotated[str | None, typer.Option("--partition", "-p", help="Partition key")] = None,
    status: Annotated[Status, typer.Option(help="succeeded or failed")] = Status.SUCCEEDED,
    rows: Annotated[int | None, typer.Option("--rows", help="Row count")] = None,
    location: Annotated[str | None, typer.Option(help="URI of the data")] = None,
    columns_from: Annotated[Path | None, typer.Option("--columns-from", help="JSON/YAML of columns")] = None,
    attr: Annotated[list[str] | None, typer.Option("--attr", help="Attribute key=value (repeatable)")] = None,
    producer: Annotated[str, typer.Option(help="Producing system")] = "cli",
    run_id: Annotated[str | None, typer.Option("--run-id", help="The producer's run id")] = None,
    error: Annotated[str | None, typer.Option(help="Why it failed (with --status failed)")] = None,
    from_dbt: Annotated[Path | None, typer.Option("--from-dbt", help="dbt target/ folder to publish")] = None,
) -> None:
    """Publish a completion event (or one per node of a dbt run with --from-dbt)."""
    from coordinator.bus.factory import open_bus
    from coordinator.cli.context import cli_settings
    from coordinator.publish import Publisher, build_event

    try:
        if from_dbt is not None:
            if dataset is not None:
                raise typer.BadParameter("give either DATASET or --from-dbt, not both")
            from coordinator.dbt import events_from_dbt

            events: list[CompletionEvent] = events_from_dbt(from_dbt, partition=partition)
        elif dataset is None:
            raise typer.BadParameter("DATASET is required (or --from-dbt target/)")
        else:
            columns = read_columns(columns_from) if columns_from else None
            events = [
                build_event(
                    dataset,
                    partition,
                    status=status,
                    row_count=rows,
                    location=location,
                    columns=columns,
                    attributes=_attributes(attr or []),
                    producer=producer,
                    producer_run_id=run_id,
                    error=error,
                )
            ]
        settings = cli_settings()
        with Publisher(open_bus(settings), settings) as publisher:
            publisher.publish_many(events)
            publisher.flush()
    except (EventError, BusError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for event in events:
        where = f"{event.dataset}[{event.partition}]" if event.partition else event.dataset
        typer.echo(f"{event.event_id}\t{event.status.value}\t{where}")
    if not events:
        typer.echo("nothing to publish", err=True)


def register(app: typer.Typer) -> None:
    app.command("publish")(publish_command)
