"""`coord serve SPEC`: the engine plus its HTTP side and observers, in one process.

coord serve pipeline.yaml [--host H] [--port P]
    the engine (as `coord run`), and on http://H:P: the web UI (/ui), /metrics, POST /events
    and the Fivetran webhook; alerts when COORD_ALERT_WEBHOOKS is set, OpenLineage events
    when COORD_LINEAGE_URL is set; the watcher reads dead letters and checks deadlines.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import ExitStack
from typing import Annotated

import typer
from rich.console import Console

from coordinator.cli.run import SpecArg, load_or_exit
from coordinator.errors import CoordinatorError
from coordinator.settings import Settings


def serve(
    spec: SpecArg,
    host: Annotated[str | None, typer.Option("--host", help="Default: COORD_API_HOST")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default: COORD_API_PORT")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the pipeline with the web UI, metrics, alerts and lineage."""
    import uvicorn

    from coordinator.alerts import Alerts
    from coordinator.api.app import create_app
    from coordinator.bus.factory import open_bus
    from coordinator.engine import Coordinator
    from coordinator.hooks import Hook, LoggingHook
    from coordinator.lineage import Lineage
    from coordinator.metrics import Metrics, group_lag
    from coordinator.store.store import StateStore
    from coordinator.watch import Watcher

    console = Console()
    loaded = load_or_exit(spec, console)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = Settings()
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with ExitStack() as stack:
            store = stack.enter_context(StateStore(settings.resolved_state_url()))
            metrics = Metrics().watch(store, group_lag(settings))
            hooks: list[Hook] = [LoggingHook(), metrics]
            listeners: list[object] = [metrics]
            alerts = None
            if settings.alert_webhooks:
                alerts = Alerts(settings, loaded, store)
                stack.callback(alerts.close)
                hooks.append(alerts)
                listeners.append(alerts)
            if settings.lineage_url:
                lineage = Lineage(settings, loaded)
                stack.callback(lineage.close)
                hooks.append(lineage)
            watcher = Watcher(settings, open_bus(settings), listeners)
            if alerts is not None:
                alerts.wake = watcher.wake
            stack.callback(watcher.stop)
            watcher.start()
            app = create_app(settings, metrics=metrics, spec=loaded, store=store)
            server = uvicorn.Server(
                uvicorn.Config(
                    app, host=host or settings.api_host, port=port or settings.api_port, log_level="warning"
                )
            )
            thread = threading.Thread(target=server.run, name="coord-http", daemon=True)
            thread.start()
            stack.callback(thread.join, 30)
            stack.callback(setattr, server, "should_exit", True)
            console.print(
                f"serving on http://{host or settings.api_host}:{port or settings.api_port}/ui",
                highlight=False,
            )
            with Coordinator(loaded, settings, store=store, hooks=hooks) as coord:
                coord.run(stop=stop.is_set)
    except KeyboardInterrupt:
        console.print("stopped")
    except CoordinatorError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
