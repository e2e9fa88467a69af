"""The FastAPI application: built in one place from the settings and a publisher, never at import.

uvicorn --factory coordinator.api.app:app_from_environment
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request

from coordinator import __version__
from coordinator.api import events, fivetran, health
from coordinator.api import metrics as metrics_api
from coordinator.auth import Authenticator
from coordinator.handover import Handover
from coordinator.metrics import Metrics
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec
from coordinator.store.store import StateStore


def no_nul(request: Request) -> None:
    """Refuse (422 invalid, naming it) a path or query value with a NUL character, for every
    route: no name, key or id holds one, and PostgreSQL's text cannot store or even compare one,
    so it reached the store as a 500 from wherever a value is looked up."""
    for name, value in request.path_params.items():
        if "\0" in str(value):
            _invalid(f"path parameter {name!r} contains a NUL character")
    if "\0" in request.scope.get("path", ""):
        _invalid("the path contains a NUL character")
    for name, value in request.query_params.multi_items():
        if "\0" in name or "\0" in value:
            _invalid(f"query parameter {name!r} contains a NUL character")


def _invalid(detail: str) -> None:
    raise HTTPException(422, detail={"reason": "invalid", "detail": detail})


def create_app(
    settings: Settings,
    publisher: Publisher | None = None,
    *,
    metrics: Metrics | None = None,
    spec: PipelineSpec | None = None,
    store: StateStore | None = None,
    bus_ready: Callable[[], bool] | None = None,
    bound_host: str | None = None,
    handover: Callable[[], Handover | None] | None = None,
) -> FastAPI:
    """The app. A publisher given is the caller's to close; one made here is closed at shutdown.
    With `metrics`, GET /metrics exposes them; with `spec` and `store`, the UI is served (api/ui.py);
    with `spec`, POST /events admits events against it (422 unknown_dataset / bad_partition).
    GET /healthz and /readyz (api/health.py): `bus_ready` says whether the engine's consumer has
    its partitions, `store` is asked whether it answers. Who may do what: coordinator/auth.py, whose
    anonymous reads need `bound_host` (the address served; default settings.api_host) on loopback.
    `handover` gives the engine's when an engine runs in this process on the same store: POST
    /events' events and audit rows are recorded in its next transaction (coordinator/handover.py)."""
    auth = Authenticator.from_settings(settings, bound_host)  # a bad tokens file fails here, at start
    if spec is not None:
        fivetran.check_mapping(settings, spec)
    owned = publisher is None
    if publisher is None:
        from coordinator.bus.factory import open_bus

        publisher = Publisher(open_bus(settings), settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            publisher.close()

    app = FastAPI(title="coordinator", version=__version__, lifespan=lifespan, dependencies=[Depends(no_nul)])
    app.state.settings, app.state.auth = settings, auth
    app.state.publisher, app.state.handover = publisher, handover
    app.state.metrics = metrics
    app.state.spec, app.state.store, app.state.bus_ready = spec, store, bus_ready
    app.include_router(events.router)
    app.include_router(fivetran.router)
    app.include_router(metrics_api.router)
    app.include_router(health.router)
    if spec is not None and store is not None:
        from coordinator.api import ui

        ui.mount(app, spec, store)
    return app


def app_from_environment() -> FastAPI:
    return create_app(Settings())
