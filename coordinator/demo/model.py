"""The churn model as the score job's input: made sure of beside the journey, then announced.

The score job takes the registry dataset `mlflow.models.churn` (mapping `latest`), so it runs
only once the model's `champion` is announced. On a fresh home the model is trained and
registered first (some seconds of MLflow); the demo does that in a thread while the load, dbt
and Spark run — none of them needs the model — and announces the version when it is there.
The announcement's event id is derived from (store, model, alias, version), so announcing the
same champion again (the demo run twice) is one event, and changes nothing.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from coordinator.events import CompletionEvent, derived_event_id

if TYPE_CHECKING:
    from coordinator.bus.base import Bus
    from coordinator.settings import Settings

MODEL, ALIAS = "churn", "champion"


def champion_event(tracking_uri: str, version: str) -> CompletionEvent:
    """ "churn@champion is `version`", as the registry poller says it, with a derived id."""
    from coordinator.scoring.registry import alias_event

    event_id = derived_event_id("registry", tracking_uri, MODEL, ALIAS, version)
    return alias_event(MODEL, ALIAS, version).model_copy(update={"event_id": event_id})


class ModelInBackground:
    """Makes sure of the champion (models.churn.ensure_champion) and announces it on the bus, in a
    thread of its own; `wait()` gives the version, or raises what went wrong."""

    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings, self.bus = settings, bus
        self.version: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-model", daemon=True)

    def start(self) -> ModelInBackground:
        self._thread.start()
        return self

    def _run(self) -> None:
        from coordinator.publish import Publisher
        from models.churn import ensure_champion

        uri = self.settings.resolved_mlflow_uri()
        try:
            version = str(ensure_champion(uri))
            with Publisher(self.bus, self.settings) as publisher:
                publisher.publish(champion_event(uri, version))
                publisher.flush()
            self.version = version
        except BaseException as exc:  # handed to wait(), in the demo's own thread
            self._error = exc

    def wait(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self.version is not None
        return self.version
