"""The registry poller inside a long-lived coordinator (`coord serve`): alias moves become events.

A score job that takes its model's registry dataset (`mlflow.models.NAME`, `on_change:
rerun_latest`) is re-run when the alias it names moves. `coord model promote` publishes that
move itself; a move made anywhere else (the MLflow UI, a training pipeline) is seen only by
polling. `coord serve` runs this poll beside the engine, so no one has to run `coord model
watch` next to it: every `registry_poll_s` each watched alias is read from its tracking store
and a move is published through the events topic like any completion event. What was announced
is read from the state store (the registry dataset's latest recorded event), which every
instance shares, and a move's event id is derived from the move (registry.move_event_id): two
instances announcing one move, or one announcing it again before its event is recorded, make
one version of it, and neither a restart nor a promote is announced twice.

A registry that cannot be read, or a bus that refuses the event, is logged and tried again at
the next poll (the move is remembered only once its event is on the bus): never fatal to the
engine beside it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from coordinator.errors import CoordinatorError
from coordinator.scoring.registry import EventSink, RegistryPoller, state_path_for, watched_alias
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec

if TYPE_CHECKING:
    from coordinator.events import CompletionEvent
    from coordinator.store.store import StateStore

log = logging.getLogger(__name__)


def aliases_by_store(spec: PipelineSpec, settings: Settings) -> dict[str, list[tuple[str, str]]]:
    """The (model, alias) pairs to watch, by the tracking URI each score job reads them from."""
    found: dict[str, dict[tuple[str, str], None]] = {}
    for job in spec.jobs.values():
        pair = watched_alias(job)
        if pair is not None:
            uri = str(job.settings.get("tracking_uri") or settings.resolved_mlflow_uri())
            found.setdefault(uri, {})[pair] = None
    return {uri: list(pairs) for uri, pairs in found.items()}


@contextlib.contextmanager
def recorded_announcements(settings: Settings) -> Iterator[Callable[[str], CompletionEvent | None] | None]:
    """For `coord model promote`: the state store's latest registry events, or None where no
    coordinator has run yet (no store to share a move's id with)."""
    if settings.state_url is None and not settings.home.is_dir():
        yield None
        return
    from coordinator.store.store import StateStore

    with StateStore(settings.resolved_state_url()) as store:
        yield functools.partial(latest_announcement, store)


def latest_announcement(store: StateStore, dataset: str) -> CompletionEvent | None:
    """The registry dataset's latest recorded event: the announcement a move follows."""
    from coordinator.history import latest_event

    with store.begin() as tx:
        return latest_event(tx, dataset, None)


class RegistryWatch:
    """A daemon thread polling each tracking store's watched aliases every `interval_s`."""

    def __init__(self, pollers: Iterable[RegistryPoller], interval_s: float,
                 close: Callable[[], None] | None = None) -> None:
        self.pollers, self.interval_s, self._close = list(pollers), interval_s, close
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """One round over every store; returns how many moves were published."""
        published = 0
        for poller in self.pollers:
            try:
                published += len(poller.poll_once())
            except CoordinatorError as exc:  # ScoringError (the registry), BusError (the bus)
                log.warning("registry poll of %s failed, next try in %.0f s: %s",
                            poller.tracking_uri, self.interval_s, exc)
            except Exception:  # an MLflow client error of its own: the engine beside us goes on
                log.exception("registry poll of %s failed, next try in %.0f s",
                              poller.tracking_uri, self.interval_s)
        return published

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)

    def start(self) -> RegistryWatch:
        self._thread = threading.Thread(target=self._run, name="coord-registry-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._close is not None:
            self._close()


def registry_watch(
    spec: PipelineSpec, settings: Settings, sink: EventSink | None = None, store: StateStore | None = None
) -> RegistryWatch | None:
    """The watch for a spec's score jobs (None when no job re-scores on an alias move); without
    a `sink` it publishes through a producer of its own on the settings' bus, closed by `stop`.
    With the state `store`, what was announced is read from it (shared by every instance) and
    each move's event id is derived from the move, so instances announcing one move make one
    version of it; without, from the home's alias file."""
    stores = aliases_by_store(spec, settings)
    if not stores:
        return None
    close = None
    if sink is None:
        from coordinator.bus.factory import open_bus
        from coordinator.publish import Publisher

        sink = publisher = Publisher(open_bus(settings), settings)
        close = publisher.close
    state = state_path_for(settings.home)
    announced = None if store is None else functools.partial(latest_announcement, store)
    pollers = [RegistryPoller(uri, pairs, sink, state_path=state, announced=announced)
               for uri, pairs in stores.items()]
    for uri, pairs in stores.items():
        log.info("watching %s in %s every %.0f s", ", ".join(f"{m}@{a}" for m, a in pairs), uri,
                 settings.registry_poll_s)
    return RegistryWatch(pollers, settings.registry_poll_s, close)
