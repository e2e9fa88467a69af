"""`coord validate` and `coord run`: check a pipeline spec, and serve it.

coord validate [--spec pipeline.yaml]   every problem as file:line: message (exit 1 if any)
coord run [--spec pipeline.yaml] [--until-idle] [--max-events N] [--timeout S]

Every command names its spec the same way: `--spec/-s`, default COORD_SPEC, else pipeline.yaml.
`validate`, `run` and `serve` still take it as an argument too (deprecated: `coord run X.yaml`
is `coord run --spec X.yaml`), so that the scripts written for them keep working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from coordinator.cli.context import DEFAULT_SPEC, SpecOpt, cli_settings
from coordinator.errors import SpecError
from coordinator.spec import load_spec
from coordinator.spec.models import PipelineSpec

if TYPE_CHECKING:
    from coordinator.service import Service
    from coordinator.turn import RunStats

SpecArg = Annotated[
    Path | None,
    typer.Argument(metavar="SPEC", help="Deprecated: the spec; use --spec", show_default=False),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log what the service does (INFO), not only warnings")
]


def chosen_spec(ctx: typer.Context, argument: Path | None, option: Path) -> Path:
    """The spec of a command that takes it both ways: the (deprecated) argument, else --spec.
    Both on the command line and different is a usage error rather than a guess; COORD_SPEC
    (the option's default) gives way to an argument."""
    if argument is None:
        return option
    given = ctx.get_parameter_source("spec")
    if given is not None and given.name == "COMMANDLINE" and option != argument:
        raise typer.BadParameter(f"the spec is given twice ({argument} and --spec {option}); give it once")
    return argument


def load_or_exit(path: Path, console: Console) -> PipelineSpec:
    try:
        return load_spec(path)
    except SpecError as exc:
        for problem in exc.problems:
            console.print(
                f"[red]{problem.file}:{problem.line}[/red]: {problem.message}",
                highlight=False,
                soft_wrap=True,
            )
        console.print(f"{len(exc.problems)} problem(s) in {path}")
        raise typer.Exit(1) from None


def serving(spec: Path, verbose: bool) -> tuple[Console, PipelineSpec, Callable[[], bool]]:
    """What `run` and `serve` do before their service starts: the spec checked, logging set up,
    SIGTERM (and a first Ctrl-C) turned into the loop's `stop`."""
    from coordinator.service import configure_logging, stop_on_sigterm

    console = Console()
    loaded = load_or_exit(spec, console)
    configure_logging(verbose)
    return console, loaded, stop_on_sigterm()


def until_stopped(service: Service, stop: Callable[[], bool], **bounds: Any) -> RunStats:
    """The service's loop; once `stop` says so (SIGTERM or Ctrl-C), running jobs get the
    grace (COORD_SHUTDOWN_GRACE_S), the rest is left for adoption when the lease is released
    (the service's `coordinator.ha.farewell()` says how many, under which lease)."""
    stats = service.run(stop=stop, **bounds)
    if stop():
        stats.add(service.coordinator.drain(service.settings.shutdown_grace_s))
    return stats


@contextmanager
def interrupted(console: Console) -> Iterator[None]:
    """A second Ctrl-C (a KeyboardInterrupt, see stop_on_sigterm): say what it leaves behind."""
    try:
        yield
    except KeyboardInterrupt:
        console.print(
            "interrupted during the grace: the jobs still running are left for adoption "
            "(at once if the lease was released, else once it expires)"
        )
        raise typer.Exit(130) from None


def validate(ctx: typer.Context, spec_argument: SpecArg = None, spec: SpecOpt = DEFAULT_SPEC) -> None:
    """Check a spec: unknown datasets, cycles, double producers, mappings, kind settings."""
    console = Console()
    loaded = load_or_exit(chosen_spec(ctx, spec_argument, spec), console)
    console.print(
        f"[green]ok[/green]: {len(loaded.datasets)} datasets, {len(loaded.jobs)} jobs, "
        f"pools {dict(loaded.pools) or {'default': 8}}"
    )


def run(
    ctx: typer.Context,
    spec_argument: SpecArg = None,
    spec: SpecOpt = DEFAULT_SPEC,
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Stop when nothing is left to do")] = False,
    max_events: Annotated[int | None, typer.Option("--max-events", help="Stop after N events")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Stop after S seconds")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the pipeline: take completion events, launch ready jobs, publish their completions."""
    from coordinator.service import Service

    console, loaded, stop = serving(chosen_spec(ctx, spec_argument, spec), verbose)
    settings = cli_settings()
    with interrupted(console), Service(loaded, settings, freeze_gc=True) as service:
        stats = until_stopped(
            service, stop, until_idle=until_idle, max_events=max_events, timeout_s=timeout
        )
        ha = service.coordinator.ha
    console.print(ha.farewell(), highlight=False)
    console.print(
        f"events {stats.events} (dead-lettered {stats.dead_lettered}), runs created {stats.runs_created}, "
        f"launched {stats.launched}, succeeded {stats.succeeded}, failed {stats.failed}, "
        f"blocked {stats.blocked}, retries {stats.retried}, published {stats.published}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("run")(run)
