"""GET /metrics: the Prometheus exposition of the app's `Metrics` (coordinator/metrics.py).
A read: scope `read` (a scraper sends the token as `authorization: credentials`), or anonymous on
loopback (coordinator/auth.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from coordinator.auth import require

router = APIRouter(tags=["observe"])


@router.get("/metrics", dependencies=[Depends(require("read"))])
async def metrics(request: Request) -> Response:
    collected = getattr(request.app.state, "metrics", None)
    if collected is None:
        raise HTTPException(404, detail={"reason": "not_configured", "detail": "no metrics in this app"})
    body = await run_in_threadpool(collected.exposition)  # the store collectors do I/O
    return Response(body, media_type=CONTENT_TYPE_LATEST)
