"""The composition root: everything one coordinator process runs on, built in one place.

    with Service(spec, settings, observe=True, http=("127.0.0.1", 8765), freeze_gc=True) as service:
        service.run(stop=stopped)

`coord run`, `coord serve`, `coord backfill` and the demo build their process through this
class (as quixstreams' Application does) instead of each wiring its own: the state store, the
bus, the hooks, and — when observing — metrics, alerts, lineage and the watcher, then the HTTP
side, and last the engine, all entered into one ExitStack. Closing the service closes them in
the reverse order: the engine stops taking events first, the HTTP server and the watcher stop,
and the store closes last. Nothing connects before it is used (the bus and store are lazy).

`freeze_gc` moves what exists once the engine has recovered (spec, plans, compiled statements,
clients) out of the cyclic collector's reach: worth it for a long-lived service (`run`,
`serve`), not for short commands and tests, so it is off unless asked for.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from coordinator.errors import SettingsError
from coordinator.secrets import Masker, mask_logging
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec

if TYPE_CHECKING:
    from coordinator.bus.base import Bus
    from coordinator.engine import Coordinator, RunStats
    from coordinator.hooks import Hook
    from coordinator.launchers.stream import StreamSupervisor
    from coordinator.metrics import Metrics
    from coordinator.store.store import StateStore

log = logging.getLogger("coordinator.service")
HTTP_START_S = 15.0  # how long the HTTP side may take to listen


class Service:
    """One coordinator process. `observe` adds metrics, alerts (COORD_ALERT_WEBHOOKS), lineage
    (COORD_LINEAGE_URL) and the watcher; `http` = (host, port) serves the UI and the API too."""

    def __init__(
        self,
        spec: PipelineSpec,
        settings: Settings,
        *,
        hooks: Iterable[Hook] = (),
        observe: bool = False,
        http: tuple[str, int] | None = None,
        freeze_gc: bool = False,
        log_runs: bool = True,
        bus: Bus | None = None,
        store: StateStore | None = None,
        fire_schedules: bool = True,
    ) -> None:
        self.spec, self.settings = spec, settings
        mask_logging(Masker.of(settings, spec))  # the log lines name no secret of these settings
        self.observe, self.http, self.freeze_gc = observe or http is not None, http, freeze_gc
        self._extra_hooks, self._log_runs = list(hooks), log_runs
        self._bus, self._store = bus, store
        self._fire_schedules = fire_schedules  # False: the caller makes the ticks (the demo's days)
        self._stack = ExitStack()
        self._coordinator: Coordinator | None = None
        self.hooks: list[Hook] = []
        self.metrics: Metrics | None = None
        self.streams: list[StreamSupervisor] | None = None  # the stream jobs' supervisors, once running

    # ------------------------------------------------------------------ the parts
    @property
    def store(self) -> StateStore:
        if self._store is None:
            from coordinator.store.store import StateStore

            if self.settings.state_url is None:  # the embedded store: a first run makes its home
                self.settings.home.mkdir(parents=True, exist_ok=True)
            self._store = self._stack.enter_context(StateStore(self.settings.resolved_state_url()))
        return self._store

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            from coordinator.bus.factory import open_bus

            self._bus = open_bus(self.settings)
        return self._bus

    @property
    def coordinator(self) -> Coordinator:
        """The engine, built on first use (after the observers, so that it closes first)."""
        if self._coordinator is None:
            from coordinator.engine import Coordinator

            self._coordinator = self._stack.enter_context(
                Coordinator(
                    self.spec,
                    self.settings,
                    bus=self.bus,
                    store=self.store,
                    hooks=self.hooks,
                    freeze_gc=self.freeze_gc,
                )
            )
            if self._fire_schedules:
                from coordinator.ticker import attach

                attach(self._coordinator)  # the spec's schedules, fired from the periodic hook
            from coordinator.retention import attach as prune

            prune(self._coordinator)  # old history leaves the store in slices (COORD_RETENTION_*)
        return self._coordinator

    def __enter__(self) -> Service:
        try:
            self._build()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()
        self._coordinator = None

    def run(self, **bounds: Any) -> RunStats:
        """The engine's loop (`Coordinator.run`: until_idle, max_events, timeout_s, consume, stop).
        The first run starts the spec's stream workers (launchers/stream.py), stopped on close."""
        coordinator = self.coordinator
        if self.streams is None:
            from coordinator.launchers.stream import start_streams

            self.streams = start_streams(self.spec, self.settings, self.store)
            for supervisor in self.streams:
                self._stack.callback(supervisor.stop)
            if self.metrics is not None and self.streams:
                from coordinator.launchers.stream import StreamCollector

                self.metrics.registry.register(StreamCollector(self.streams))
        return coordinator.run(**bounds)

    # ------------------------------------------------------------------ wiring
    def _build(self) -> None:
        from coordinator.hooks import LoggingHook

        if self._log_runs:
            self.hooks.append(LoggingHook())
        self.hooks.extend(self._extra_hooks)
        if self.observe:
            self._observers()
        if self.http is not None:
            self._serve_http(*self.http)

    def _observers(self) -> None:
        from coordinator.alerts import Alerts
        from coordinator.lineage import Lineage
        from coordinator.metrics import Metrics, group_lag
        from coordinator.watch import Watcher

        settings, stack = self.settings, self._stack
        self.metrics = Metrics().watch(self.store, group_lag(settings), self.spec.pool_sizes)
        self.hooks.append(self.metrics)
        listeners: list[object] = [self.metrics]
        alerts = None
        if settings.alert_webhooks:
            alerts = Alerts(settings, self.spec, self.store)
            stack.callback(alerts.close)
            self.hooks.append(alerts)
            listeners.append(alerts)
        if settings.lineage_url:
            lineage = Lineage(settings, self.spec)
            stack.callback(lineage.close)
            self.hooks.append(lineage)
        from coordinator.bus.factory import open_bus

        watcher = Watcher(settings, open_bus(settings), listeners)  # its own consumer of dead letters
        if alerts is not None:
            alerts.wake = watcher.wake
        stack.callback(watcher.stop)
        watcher.start()
        from coordinator.scoring.watching import registry_watch

        registry = registry_watch(self.spec, settings, store=self.store)  # score jobs' alias moves
        if registry is not None:
            stack.callback(registry.stop)
            registry.start()

    def _serve_http(self, host: str, port: int) -> None:
        import uvicorn

        from coordinator.api.app import create_app

        app = create_app(
            self.settings, metrics=self.metrics, spec=self.spec, store=self.store,
            bus_ready=lambda: self._coordinator is not None and self._coordinator.intake.assigned(),
            bound_host=host,  # anonymous reads are for a loopback bind only (coordinator/auth.py)
            handover=lambda: self._coordinator.handover if self._coordinator is not None else None,
        )
        # httptools parses a request ~1 ms faster than h11 here (POST /events, the launch path's
        # first hop); uvloop measured no faster than asyncio's own loop, so the loop is asyncio's
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", http="httptools", loop="asyncio"
        )
        server = uvicorn.Server(config)

        def serve() -> None:
            with contextlib.suppress(SystemExit):  # uvicorn's way to say it could not bind: below
                server.run()

        thread = threading.Thread(target=serve, name="coord-http", daemon=True)
        thread.start()
        self._stack.callback(thread.join, 30)
        self._stack.callback(setattr, server, "should_exit", True)
        # uvicorn reports a port it cannot bind by ending its thread: say so here, not never
        deadline = time.monotonic() + HTTP_START_S
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            raise SettingsError(
                f"cannot serve HTTP on {host}:{port} (in use, or not an address of this machine?); "
                "choose another with --host/--port or COORD_API_HOST/COORD_API_PORT"
            )


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    mask_logging()


def stop_on_sigterm() -> Callable[[], bool]:
    """A `stop` for `run`: true once SIGTERM or a first Ctrl-C arrived (a second Ctrl-C is a
    KeyboardInterrupt)."""
    stop = threading.Event()

    def first_interrupt(*_: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, first_interrupt)
    return stop.is_set
