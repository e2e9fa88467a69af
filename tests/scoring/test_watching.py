"""The registry poll inside `coord serve`: which aliases it watches in which store, and that a
poll which cannot publish is logged and tried again, never fatal, and announces the move once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coordinator.bus.factory import open_bus
from coordinator.errors import BusError
from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.scoring.watching import aliases_by_store, registry_watch
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
