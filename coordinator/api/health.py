"""GET /healthz and GET /readyz: for a load balancer or an orchestrator's probes.

/healthz answers 200 while the process serves HTTP at all (liveness: restart me if not).
/readyz answers 200 only when this instance can do its work (readiness: send me traffic):
its consumer has joined the group and been given its partitions (`bus`), and the state store
answers (`store`); else 503, naming what is not ready. A check the app was not given (an
HTTP side without an engine, or without a store) is reported as "not checked" and passes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from coordinator.errors import CoordinatorError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _checks(bus_ready: Any, store: Any) -> dict[str, str]:
    checks = {"bus": "not checked", "store": "not checked"}
    if bus_ready is not None:
        try:
            checks["bus"] = "assigned" if bus_ready() else "not assigned yet"
        except CoordinatorError as exc:
            checks["bus"] = f"error: {exc}"
    if store is not None:
        try:
            with store.begin() as tx:
                tx.outbox_count()
            checks["store"] = "reachable"
        except CoordinatorError as exc:
            checks["store"] = f"error: {exc}"
    return checks


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    bus_ready, store = getattr(state, "bus_ready", None), getattr(state, "store", None)
    checks = await run_in_threadpool(_checks, bus_ready, store)
    ready = checks["bus"] in ("assigned", "not checked") and checks["store"] in ("reachable", "not checked")
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)
