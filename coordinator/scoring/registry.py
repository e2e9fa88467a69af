"""The model registry as an input: moving an alias is a new version of dataset `mlflow.models.NAME`.

A score job lists `mlflow.models.churn` among its inputs (unpartitioned, mapping `latest`).
When the `champion` alias moves, a completion event for that dataset — attributes
{model_version, alias, model_uri} — makes the latest partition ready again, so it is re-scored
with the new champion and downstream pushes follow, without anyone publishing by hand.

Two ways the event is produced, both through coordinator.publish:
- `coord model promote NAME VERSION` moves the alias and publishes at once (`promote`);
- `RegistryPoller.poll_once()` compares each watched alias with the version it saw last and
  publishes when it moved — for aliases moved elsewhere (the MLflow UI, a training pipeline).
  `coord serve` calls it periodically (scoring/watching.py), `coord model watch` beside
  `coord run`; the versions announced are kept in a small JSON file under the coordinator's
  home, shared with `promote`, so a restart neither misses a move nor announces one twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from coordinator.errors import ScoringError
from coordinator.events import CompletionEvent
from coordinator.scoring.resolve import parse_ref, registry_client

log = logging.getLogger(__name__)

REGISTRY_PREFIX = "mlflow.models."
PRODUCER = "mlflow-registry"


class EventSink(Protocol):
    """What the poller publishes through: a coordinator.publish.Publisher fits."""

    def publish(self, event: CompletionEvent) -> None: ...

    def flush(self, timeout: float = 30.0) -> None: ...


def registry_dataset(model_name: str) -> str:
    return REGISTRY_PREFIX + model_name


def alias_event(
    model_name: str, alias: str, version: str, *, producer: str = PRODUCER, event_id: str | None = None
) -> CompletionEvent:
    """The completion event that says "alias of model now points at version"."""
    from coordinator.publish import build_event

    return build_event(
        registry_dataset(model_name),
        None,
        event_id=event_id,
        producer=producer,
        attributes={
            "model_version": str(version),
            "alias": alias,
            "model_uri": f"models:/{model_name}/{version}",
        },
    )


def move_event_id(
    tracking_uri: str, model_name: str, alias: str, version: str, previous: str | None
) -> str:
    """The id of the event announcing that `alias` moved to `version`, derived from the move itself:
    the store and the model, the version, and the id of the announcement it follows (none for a
    first sighting). Every instance that sees the same move computes the same id, and the state
    store records an id once, so a move is one version however many pollers announce it; a move
    back (1 → 2 → 1) follows another announcement, so it is a new id."""
    from coordinator.events import derived_event_id

    follows = [previous] if previous else []
    return derived_event_id("registry", tracking_uri, model_name, alias, str(version), *follows)


def current_version(
    tracking_uri: str, model_name: str, alias: str, client: object | None = None
) -> str | None:
    """The version `alias` points at now; None if the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    client = client or registry_client(tracking_uri)
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise ScoringError(
            f"cannot read alias {model_name}@{alias} from {tracking_uri}: {exc.message}"
        ) from exc


def move_alias(tracking_uri: str, model_name: str, alias: str, version: str) -> str | None:
    """Point `alias` at `version` (which must exist); returns the version it pointed at before."""
    from mlflow.exceptions import MlflowException

    client = registry_client(tracking_uri)
    before = current_version(tracking_uri, model_name, alias, client)
    try:
        client.get_model_version(model_name, str(version))
        client.set_registered_model_alias(model_name, alias, str(version))
    except MlflowException as exc:
        raise ScoringError(f"cannot point {model_name}@{alias} at version {version}: {exc.message}") from exc
    return before


def promote(
    tracking_uri: str,
    model_name: str,
    version: str,
    sink: EventSink,
    *,
    alias: str = "champion",
    state_path: Path | None = None,
    announced: Callable[[str], CompletionEvent | None] | None = None,
) -> tuple[str | None, CompletionEvent]:
    """Move the alias, then publish its completion event; returns (previous version, event).

    The alias is moved first: an event published for a move that then failed would re-score
    with the old version and record it as new. With the poller's `state_path`, the move is
    also recorded there, so a poller on the same home does not announce it a second time; with
    `announced` (the state store's latest registry event) the event gets the id any poller over
    that store derives for the same move, so the two make one version.
    """
    event_id = None
    if announced is not None:  # read before the move: a store that fails leaves the alias alone
        last = announced(registry_dataset(model_name))
        previous = last.event_id if last is not None else None
        # the id a poller that sees this move before its event is recorded gives it too
        event_id = move_event_id(tracking_uri, model_name, alias, str(version), previous)
    before = move_alias(tracking_uri, model_name, alias, version)
    event = alias_event(model_name, alias, version, event_id=event_id)
    sink.publish(event)
    sink.flush()
    if state_path is not None:
        seen = AliasState(state_path)
        seen.versions[f"{model_name}@{alias}"] = str(version)
        seen.save()
    return before, event


def watched_alias(job: object) -> tuple[str, str] | None:
    """(model, alias) of a score job that has its model's registry dataset among its inputs and
    names the model by alias; None for any other job."""
    settings = getattr(job, "settings", {})
    if getattr(job, "kind", None) != "score" or "model" not in settings:
        return None
    ref = parse_ref(str(settings["model"]))
    if ref.alias and any(i.dataset == registry_dataset(ref.name) for i in getattr(job, "inputs", ())):
        return ref.name, ref.alias
    return None


def watched_aliases(spec: object) -> list[tuple[str, str]]:
    """(model, alias) pairs to poll for a pipeline spec, one per pair however many jobs use it."""
    found = (watched_alias(job) for job in getattr(spec, "jobs", {}).values())
    return list(dict.fromkeys(pair for pair in found if pair is not None))


class AliasState:
    """The version each alias pointed at when it was last announced, in a small JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.versions: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable registry alias state %s: %s", self.path, exc)
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.versions, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)


def state_path_for(home: Path) -> Path:
    """Where `coord model promote` and the poller of one coordinator home share what they announced."""
    return home / "registry_aliases.json"


class RegistryPoller:
    """Publishes an alias event whenever a watched alias points at another version than last seen.

    The first sighting of an alias is announced too (the registry input becomes complete, so
    jobs that wait for it can run); an alias that does not exist (yet) is skipped quietly.
    Without a `state_path` the versions seen are kept in memory only, and a restarted poller
    announces every alias once more: harmless (the latest partition is scored again with the
    same version), but a waste.
    """

    def __init__(
        self,
        tracking_uri: str,
        watched: Iterable[tuple[str, str]],
        sink: EventSink,
        state_path: Path | None = None,
        announced: Callable[[str], CompletionEvent | None] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.watched = list(dict.fromkeys(watched))
        self.sink = sink
        self.state_path = state_path
        # The registry dataset's latest recorded event, read from the state store that every
        # instance shares (coord serve): what was announced is then known to all of them, and
        # each move's event gets the id move_event_id derives.
        self.announced = announced
        self._memory = AliasState(None)

    def poll_once(self) -> list[CompletionEvent]:
        """Check every watched alias once; publish (and flush) an event per move. Returns them.

        The version is remembered only after the event is on the bus, so a bus failure
        (BusError) means the move is announced on the next poll, not lost.
        """
        client = registry_client(self.tracking_uri)
        state = AliasState(self.state_path) if self.state_path else self._memory
        events: list[CompletionEvent] = []
        moved: dict[str, str] = {}
        for model_name, alias in self.watched:
            version = current_version(self.tracking_uri, model_name, alias, client)
            key = f"{model_name}@{alias}"
            if version is None:
                continue
            if self.announced is None:
                if state.versions.get(key) == version:
                    continue
                event = alias_event(model_name, alias, version)
            else:
                last = self.announced(registry_dataset(model_name))
                if last is not None and last.attributes.get("model_version") == version:
                    continue
                previous = last.event_id if last is not None else None
                event_id = move_event_id(self.tracking_uri, model_name, alias, version, previous)
                event = alias_event(model_name, alias, version, event_id=event_id)
            events.append(event)
            moved[key] = version
        if not events:
            return []
        for event in events:
            self.sink.publish(event)
        self.sink.flush()
        state.versions.update(moved)
        state.save()
        for key, version in moved.items():
            log.info("registry alias %s now points at version %s: published", key, version)
        return events


def describe_moves(events: Sequence[CompletionEvent]) -> list[str]:
    return [
        f"{e.dataset}: {e.attributes.get('alias')} → version {e.attributes.get('model_version')}"
        for e in events
    ]
