"""What every command shares: the settings the app's callback built, and the one-line error."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from coordinator.errors import CoordinatorError, SettingsError
from coordinator.settings import Settings

if TYPE_CHECKING:
    from coordinator.store.store import StateStore


def cli_settings() -> Settings:
    """The settings of this invocation (built once by the app's callback; built here when a
    command function is called outside the app)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Settings) if ctx is not None else None
    return found if found is not None else Settings()


def report_error(exc: CoordinatorError) -> None:
    """One line per problem on stderr: `error: ...` (settings: `settings: ...` per variable)."""
    label = "settings" if isinstance(exc, SettingsError) else "error"
    for line in str(exc).splitlines() or [type(exc).__name__]:
        click.echo(f"{label}: {line}", file=sys.stderr)


def state_store(settings: Settings) -> StateStore:
    """The state store for a command that reads it; a clear line when nothing has run here yet
    (an embedded store's folder that does not exist), instead of SQLite's "unable to open"."""
    from coordinator.store.store import StateStore

    if settings.state_url is None and not settings.home.is_dir():
        raise CoordinatorError(
            f"no coordinator home at {settings.home.resolve()} (COORD_HOME): nothing has run here yet; "
            "`coord run SPEC` creates it, or set COORD_HOME (or COORD_STATE_URL) to the one in use"
        )
    return StateStore(settings.resolved_state_url())
