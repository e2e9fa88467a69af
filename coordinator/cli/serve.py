"""`coord serve`: the engine plus its HTTP side and observers, in one process.

coord serve [--spec pipeline.yaml] [--home H] [--host H] [--port P]
    the engine (as `coord run`), and on http://H:P: the web UI (/ui), /metrics, POST /events
    and the Fivetran webhook; alerts when COORD_ALERT_WEBHOOKS is set, OpenLineage events
    when COORD_LINEAGE_URL is set; the watcher reads dead letters and checks deadlines.
"""

from __future__ import annotations

from typing import Annotated

import typer

from coordinator.cli.context import DEFAULT_SPEC, SpecOpt, cli_settings
from coordinator.cli.run import SpecArg, VerboseOpt, chosen_spec, interrupted, serving, until_stopped


def serve(
    ctx: typer.Context,
    spec_argument: SpecArg = None,
    spec: SpecOpt = DEFAULT_SPEC,
    host: Annotated[str | None, typer.Option("--host", help="Default: COORD_API_HOST")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default: COORD_API_PORT")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the pipeline with the web UI, metrics, alerts and lineage."""
    from coordinator.service import Service

    console, loaded, stop = serving(chosen_spec(ctx, spec_argument, spec), verbose)
    settings = cli_settings()
    address = (host or settings.api_host, port or settings.api_port)
    with interrupted(console), Service(loaded, settings, http=address, freeze_gc=True) as service:
        console.print(f"serving on http://{address[0]}:{address[1]}/ui", highlight=False)
        until_stopped(service, stop)  # SIGTERM: stop taking events, the grace, then release
        ha = service.coordinator.ha
    console.print(ha.farewell(), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
