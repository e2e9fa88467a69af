"""The `coord` command line. Each sub-module registers its commands on the one app built here."""

from __future__ import annotations

import typer

from coordinator.cli import demo, info, model, ops, publish, push, run, serve, trace, views

COMMAND_MODULES = (info, model, publish, run, ops, views, push, demo, trace, serve)


def build_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
    for module in COMMAND_MODULES:
        module.register(app)
    return app


def main() -> None:
    build_app()()
