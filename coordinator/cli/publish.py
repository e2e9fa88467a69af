"""`coord publish`: put completion events on the bus from a shell, a scheduler or a CI step.

    coord publish DATASET --partition P [--status failed] [--rows N] [--location URI]
                  [--columns-from FILE] [--attr k=v ...] [--event-id ID] [--spec SPEC]
    coord publish --from-dbt target/ [--partition P] [--hold-on-test-failure] [--spec SPEC]

Prints the id of every event published; exits 1 with the reason when an event is invalid, does
not fit the spec given with --spec, or the bus cannot take it (nothing is half-published: events
are validated before any is sent).

`--event-id`: a retried publish with the same id is a no-op downstream (the coordinator records
an event id once), so a scheduler can retry a step that may already have published. Without it
each call makes a new id. dbt events carry ids derived from the invocation, so they need none.

dbt artifacts of an invocation that built nothing (`compile`, `docs generate`, `show`, `test`...)
publish nothing and exit 0 with one line saying so on stderr: a script that publishes after
every dbt command need not know which one ran.
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
    except (OSError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:  # not UTF-8, nested too deep
        why = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise typer.BadParameter(f"cannot read {path}: {why}", param_hint="--columns-from") from None
    if isinstance(data, dict) and "columns" in data:
        data = data["columns"]
    if isinstance(data, dict):
        return [{"name": str(k), "type": str(v)} for k, v in data.items()]
    if isinstance(data, list) and all(isinstance(c, dict) for c in data):
        return data
    raise typer.BadParameter(
        f"{path}: expected a list of columns or a name: type mapping", param_hint="--columns-from"
    )


def _dbt_events(target: Path, partition: str | None, hold: bool) -> list[CompletionEvent]:
    """The dbt invocation's events; its notes as warnings, and why nothing was built when it was not."""
    from coordinator.dbt import read_dbt_run

    run = read_dbt_run(target, partition=partition, hold_on_test_failure=hold)
    for note in run.notes:
        typer.echo(f"warning: {note}", err=True)
    if run.nothing_built:
        typer.echo(f"nothing built: {run.nothing_built}", err=True)
    elif not run.events:
        typer.echo(f"nothing to publish: dbt `{run.command}` built no model, seed or snapshot", err=True)
    return run.events


def _refused_by_spec(spec_path: Path, events: list[CompletionEvent]) -> list[str]:
    """One line per event the spec refuses (unknown dataset, partition key that does not fit)."""
    from rich.console import Console

    from coordinator.admission import admission_problem
    from coordinator.cli.run import load_or_exit

    spec = load_or_exit(spec_path, Console(stderr=True))
    refused = []
    for event in events:
        problem = admission_problem(spec, event.dataset, event.partition)
        if problem is not None:
            refused.append(f"error: {problem} (checked against {spec_path})")
    return refused


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
    event_id: Annotated[
        str | None, typer.Option("--event-id", help="Event id: a retry with the same id is a no-op")
    ] = None,
    spec: Annotated[
        Path | None, typer.Option("--spec", "-s", help="Check the events against this pipeline spec first")
    ] = None,
    from_dbt: Annotated[Path | None, typer.Option("--from-dbt", help="dbt target/ folder to publish")] = None,
    hold_on_test_failure: Annotated[
        bool,
        typer.Option("--hold-on-test-failure", help="--from-dbt: models whose tests failed publish failed"),
    ] = False,
) -> None:
    """Publish a completion event (or one per node a dbt invocation built, with --from-dbt)."""
    from coordinator.bus.factory import open_bus
    from coordinator.cli.context import cli_settings
    from coordinator.publish import Publisher, build_event

    try:
        if from_dbt is not None:
            if dataset is not None:
                raise typer.BadParameter("give either DATASET or --from-dbt, not both")
            if event_id is not None:
                why = "dbt events carry ids made from the invocation"
                raise typer.BadParameter(why, param_hint="--event-id")
            events = _dbt_events(from_dbt, partition, hold_on_test_failure)
        elif dataset is None:
            raise typer.BadParameter("DATASET is required (or --from-dbt target/)")
        elif hold_on_test_failure:
            raise typer.BadParameter("only with --from-dbt", param_hint="--hold-on-test-failure")
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
                    event_id=event_id,
                )
            ]
        if spec is not None and (refused := _refused_by_spec(spec, events)):
            for line in refused:
                typer.echo(line, err=True)
            typer.echo(f"nothing published: {len(refused)} of {len(events)} event(s) refused", err=True)
            raise typer.Exit(1)
        if events:
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


def register(app: typer.Typer) -> None:
    app.command("publish")(publish_command)
