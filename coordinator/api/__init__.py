"""The HTTP side: `create_app` builds the FastAPI app (app.py); routers beside it."""

from coordinator.api.app import create_app

__all__ = ["create_app"]
