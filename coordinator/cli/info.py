"""`coord info`: the effective settings (secrets masked), to check what the coordinator will use."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from coordinator import __version__
from coordinator.cli.context import cli_settings
from coordinator.secrets import mask_url, mask_value


def info() -> None:
    """Show the version and the effective settings."""
    settings = cli_settings()
    table = Table(title=f"coordinator {__version__}")
    table.add_column("setting")
    table.add_column("value")
    for name, value in settings.model_dump().items():
        if name == "tokens":  # their names and scopes; a hash is nothing to show
            value = [f"{t['name']}: {', '.join(t['scopes'])}" for t in value]
        table.add_row(name, str(mask_value(name, value)))
    table.add_row("state store", mask_url(settings.resolved_state_url()))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
