"""The `coord` command line. Each sub-module registers its commands on the one app built here.

The settings are built once, in the app's callback, before any command runs, and reach the
commands through the click context (`cli_settings()`). `--home` is taken before the command
(`coord --home H status`) and by every command (`coord status --home H`); either sets COORD_HOME
for the invocation, and a command's own rebuilds its settings. Every command reports a CoordinatorError
— a bad setting, a spec problem, a store or bus that cannot be reached — as one line on stderr
and exits 1, never with a traceback.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from coordinator.cli import demo, info, model, ops, prune, publish, push, run, serve, tokens, trace, views
from coordinator.cli.context import HomeOpt, report_error, use_home
from coordinator.errors import CoordinatorError
from coordinator.settings import Settings

COMMAND_MODULES = (info, model, publish, run, ops, views, push, demo, trace, serve, tokens, prune)
HELP_ONLY = "coordinator.help_only"  # ctx.meta: a command's --help was asked for
HELP = "The coordinator of data pipelines: check and serve a spec, publish events, inspect and resume runs."


class CoordGroup(TyperGroup):
    """The app's group: a CoordinatorError from the callback or any command is one line, exit 1;
    the group's `--home` is given to every command that has none of its own (demo has)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        home = next((p for p in self.params if p.name == "home"), None)
        if home is not None:
            for command in _leaves(self):
                if all(p.name != "home" for p in command.params):
                    command.params.append(_command_home(home))

    def invoke(self, ctx):  # noqa: ANN001, ANN201 — click's signature
        rest = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # what the command will parse
        ctx.meta[HELP_ONLY] = any(arg in ctx.help_option_names for arg in rest)
        home = os.environ.get("COORD_HOME")
        try:
            return super().invoke(ctx)
        except CoordinatorError as exc:
            report_error(exc)
            raise typer.Exit(1) from None
        finally:  # --home is this invocation's: an app invoked in-process (tests) leaves none behind
            _restore("COORD_HOME", home)


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _leaves(group: Any) -> list[Any]:
    """The commands under a group, those of its sub-groups (`model`, `token`) included."""
    found = []
    for command in group.commands.values():
        found.extend(_leaves(command) if hasattr(command, "commands") else [command])
    return found


def _command_home(group_home: Any) -> Any:
    """A command's `--home`: the group's option (its help and type), applied when parsed —
    COORD_HOME set and the command's settings rebuilt — and not passed to the function."""

    def apply(ctx: Any, _param: Any, value: Path | None) -> Path | None:
        use_home(value)
        if value is not None and not (ctx.resilient_parsing or ctx.meta.get(HELP_ONLY)):
            ctx.obj = Settings()
        return value

    option = copy.copy(group_home)
    option.expose_value, option.is_eager, option.callback = False, True, apply
    return option


def _settings(ctx: typer.Context, home: HomeOpt = None) -> None:
    """Read the settings (COORD_ variables and .env) once, for every command — not for a
    command's --help, which needs none and should answer even when a setting is wrong."""
    use_home(home)
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
