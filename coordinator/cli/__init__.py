"""The `coord` command line. Each sub-module registers its commands on the one app built here.

The settings are built once, in the app's callback, before any command runs, and reach the
commands through the click context (`cli_settings()`). Every command reports a CoordinatorError
— a bad setting, a spec problem, a store or bus that cannot be reached — as one line on stderr
and exits 1, never with a traceback.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from coordinator.cli import demo, info, model, ops, prune, publish, push, run, serve, tokens, trace, views
from coordinator.cli.context import report_error
from coordinator.errors import CoordinatorError
from coordinator.settings import Settings

COMMAND_MODULES = (info, model, publish, run, ops, views, push, demo, trace, serve, tokens, prune)
HELP_ONLY = "coordinator.help_only"  # ctx.meta: a command's --help was asked for
HELP = "The coordinator of data pipelines: check and serve a spec, publish events, inspect and resume runs."


class CoordGroup(TyperGroup):
    """The app's group: a CoordinatorError from the callback or any command is one line, exit 1."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201 — click's signature
        rest = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # what the command will parse
        ctx.meta[HELP_ONLY] = any(arg in ctx.help_option_names for arg in rest)
        try:
            return super().invoke(ctx)
        except CoordinatorError as exc:
            report_error(exc)
            raise typer.Exit(1) from None


def _settings(ctx: typer.Context) -> None:
    """Read the settings (COORD_ variables and .env) once, for every command — not for a
    command's --help, which needs none and should answer even when a setting is wrong."""
    if ctx.resilient_parsing or ctx.meta.get(HELP_ONLY):
        return
    ctx.obj = Settings()


def build_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP, cls=CoordGroup)
    app.callback()(_settings)
    for module in COMMAND_MODULES:
        module.register(app)
    return app


def main() -> None:
    build_app()()
