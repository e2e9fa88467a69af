"""The registry poll inside `coord serve`: which aliases it watches in which store, and that a
poll which cannot publish is logged and tried again, never fatal, and announces the move once."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest

from coordinator.bus.factory import open_bus
from coordinator.codec import codec_for
from coordinator.engine import Coordinator
from coordinator.errors import BusError
from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.scoring import registry
from coordinator.scoring.registry import move_event_id
from coordinator.scoring.watching import aliases_by_store, latest_announcement, registry_watch
from coordinator.settings import Settings
from coordinator.spec import parse_spec

pytestmark = pytest.mark.mlflow

DATASETS = """
datasets:
  reporting.user_features: {partitioning: daily}
  mlflow.models.churn: {partitioning: none}
  mlflow.models.upsell: {partitioning: none}
  scores.churn: {partitioning: daily}
  scores.churn_eu: {partitioning: daily}
  scores.upsell: {partitioning: daily}
  scores.pinned: {partitioning: daily}
jobs:
"""
JOBS = {
    "churn_scores": """
  churn_scores:
    kind: score
    inputs:
      - reporting.user_features
      - {dataset: mlflow.models.churn, mapping: latest, on_change: rerun_latest}
    outputs: [scores.churn]
    settings: {model: "models:/churn@champion", key_columns: [user_id], output: "lake/{partition}"}
""",
    "churn_scores_eu": """
  churn_scores_eu:
    kind: score
    inputs: [reporting.user_features, {dataset: mlflow.models.churn, mapping: latest}]
    outputs: [scores.churn_eu]
    settings: {model: "models:/churn@champion", key_columns: [user_id], output: "lake/eu/{partition}"}
""",
    "upsell_scores": """
  upsell_scores:
    kind: score
    inputs: [reporting.user_features, {dataset: mlflow.models.upsell, mapping: latest}]
    outputs: [scores.upsell]
    settings: {model: "models:/upsell@live", key_columns: [user_id], output: "lake/u/{partition}",
               tracking_uri: "http://127.0.0.1:5000"}
""",
    "pinned_scores": """
  pinned_scores:
    kind: score
    inputs: [reporting.user_features]
    outputs: [scores.pinned]
    settings: {model: "models:/churn/3", key_columns: [user_id], output: "lake/p/{partition}"}
""",
}


def spec_of(*jobs: str):
    return parse_spec(DATASETS + "".join(JOBS[j] for j in jobs))


def events_on_bus(settings: Settings) -> list[CompletionEvent]:
    codec = codec_for(settings)
    with open_bus(settings).consumer("observer", [settings.topic_events]) as consumer:
        return [codec.decode(m.value) for m in consumer.poll(timeout=2)]


class FailingFirst:
    """The real publisher on the local bus, refusing the first `failures` publishes as a bus
    that is away would (BusError)."""

    def __init__(self, publisher: Publisher, failures: int) -> None:
        self.publisher, self.failures = publisher, failures
        self.published: list[CompletionEvent] = []

    def publish(self, event: CompletionEvent) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise BusError("the bus is away", retriable=True)
        self.publisher.publish(event)
        self.published.append(event)

    def flush(self, timeout: float = 30.0) -> None:
        self.publisher.flush(timeout)


def test_each_alias_is_watched_once_in_the_store_its_job_reads(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", bus="local", mlflow_tracking_uri="sqlite:///m.db")
    spec = spec_of(*JOBS)
    assert aliases_by_store(spec, settings) == {
        "sqlite:///m.db": [("churn", "champion")],        # two jobs, one alias: polled once
        "http://127.0.0.1:5000": [("upsell", "live")],    # the job's own tracking_uri
    }                                                      # a pinned version is never polled
    assert registry_watch(spec_of("pinned_scores"), settings) is None   # no thread, no producer


def test_a_poll_that_cannot_publish_is_tried_again(churn_registry, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(home=tmp_path / "home", bus="local", mlflow_tracking_uri=churn_registry.tracking_uri)
    spec = spec_of("churn_scores")
    with Publisher(open_bus(settings), settings) as publisher:
        sink = FailingFirst(publisher, failures=1)
        watch = registry_watch(spec, settings, sink)
        assert watch is not None
        with caplog.at_level(logging.WARNING, logger="coordinator.scoring.watching"):
            assert watch.poll() == 0                       # the bus refused: logged, not raised
        assert "registry poll of sqlite:" in caplog.text and "the bus is away" in caplog.text
        assert watch.poll() == 1                           # announced at the next poll
        assert watch.poll() == 0                           # and only once
    assert [e.attributes["model_version"] for e in sink.published] == ["1"]
    assert (settings.home / "registry_aliases.json").exists()   # shared with coord model promote


REGISTRY_ONLY = """
datasets:
  mlflow.models.churn: {partitioning: none}
  seen.churn: {partitioning: none}
jobs:
  note_model:
    kind: command
    inputs: [mlflow.models.churn]
    outputs: [seen.churn]
    settings: {command: [sh, -c, "true"]}
"""


def test_instances_sharing_a_store_announce_each_move_once(churn_registry, tmp_path: Path) -> None:
    """Two coordinators (two homes, one state store, one bus) poll the same alias: each move is
    one recorded version, and a move back to an earlier version is a new one."""
    uri = churn_registry.tracking_uri
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    first, second = (Settings(home=tmp_path / name, bus="local", state_url=state_url, mlflow_tracking_uri=uri)
                     for name in ("a", "b"))
    (tmp_path / "b").mkdir()
    bus = open_bus(first)                                  # the bus under home a: both publish to it
    spec = spec_of("churn_scores")
    registry_spec = parse_spec(REGISTRY_ONLY)
    try:
        with Publisher(bus, first) as publisher, Coordinator(registry_spec, first) as engine:
            watches = [registry_watch(spec, s, publisher, store=engine.store) for s in (first, second)]

            assert sum(w.poll() for w in watches) == 2     # both announce the first sighting ...
            engine.run(until_idle=True, timeout_s=60)
            assert sum(w.poll() for w in watches) == 0     # ... recorded once; now known to both
            registry.move_alias(uri, "churn", "champion", "2")
            assert sum(w.poll() for w in watches) == 2
            engine.run(until_idle=True, timeout_s=60)
            registry.move_alias(uri, "churn", "champion", "1")   # back: a new move, not the first
            assert sum(w.poll() for w in watches) == 2
            engine.run(until_idle=True, timeout_s=60)
            # coord model promote, and both pollers seeing the move before its event is recorded
            _, promoted = registry.promote(uri, "churn", "2", publisher,
                                           announced=functools.partial(latest_announcement, engine.store))
            assert sum(w.poll() for w in watches) == 2
            engine.run(until_idle=True, timeout_s=60)
            with engine.store.begin() as tx:
                runs = tx.list_runs(job="note_model")
    finally:
        registry.move_alias(uri, "churn", "champion", "1")
    announced = [e for e in events_on_bus(first) if e.dataset == "mlflow.models.churn"]
    assert [e.attributes["model_version"] for e in announced] == ["1", "1", "2", "2", "1", "1", "2", "2", "2"]
    ids = [e.event_id for e in announced]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5]   # the same move, the same id
    assert ids[6] == promoted.event_id == ids[7] == ids[8]              # promote's and the pollers'
    assert len({ids[0], ids[2], ids[4], ids[6]}) == 4                    # 1 → 2 → 1 → 2: four moves
    assert ids[0] == move_event_id(uri, "churn", "champion", "1", None)
    assert len(runs) == 4                                  # one run per move, not per announcement
