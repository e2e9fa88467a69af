"""What every command shares: the settings the app's callback built, the one-line error, and the
two options every command takes the same way (`--spec/-s`, `--home`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from coordinator.errors import CoordinatorError, SettingsError
from coordinator.settings import Settings

try:  # typer carries its own click since 0.2x: its context is the one the commands run in
    from typer._click.globals import get_current_context
except ImportError:  # an older typer runs on click itself
    from click import get_current_context

if TYPE_CHECKING:
    from coordinator.store.store import StateStore

DEFAULT_SPEC = Path("pipeline.yaml")
SpecOpt = Annotated[
    Path,
    typer.Option("--spec", "-s", envvar="COORD_SPEC", help="The pipeline spec (YAML)"),
]
HOME_HELP = "The coordinator's home folder for this invocation and the jobs it starts (sets COORD_HOME)"
HomeOpt = Annotated[Path | None, typer.Option("--home", help=HOME_HELP, show_default=False)]


def use_home(home: Path | None) -> None:
    """`--home`: COORD_HOME for this invocation. Set in the environment, so that the settings
    built after it and every process it starts (a job that runs `coord publish`) see one home."""
    if home is not None:
        os.environ["COORD_HOME"] = str(home)


def cli_settings() -> Settings:
    """The settings of this invocation (built once by the app's callback, again by a command's
    own --home; built here when a command function is called outside the app)."""
    ctx = get_current_context(silent=True)
    found = ctx.find_object(Settings) if ctx is not None else None
    return found if found is not None else Settings()


def report_error(exc: CoordinatorError) -> None:
    """One line per problem on stderr: `error: ...` (settings: `settings: ...` per variable)."""
    label = "settings" if isinstance(exc, SettingsError) else "error"
    for line in str(exc).splitlines() or [type(exc).__name__]:
        typer.echo(f"{label}: {line}", err=True)


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
