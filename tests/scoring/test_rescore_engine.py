"""The model registry as an input, through the engine: a score job takes `mlflow.models.churn`
(mapping latest) beside its daily features. The poller's first sighting of churn@champion plus
the day's features make the partition ready; after promoting version 2 the same partition is
scored again with it (on_change: rerun_latest, no re-run by hand), and the new output event
names the new version."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from coordinator.bus.local import LocalBus
from coordinator.engine import Coordinator
from coordinator.intake import EventIntake
from coordinator.publish import Publisher, build_event
from coordinator.scoring import registry
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from tests.scoring.conftest import write_features

pytestmark = pytest.mark.mlflow
DAY = "2024-06-01"

SPEC = """
datasets:
  reporting.user_features: {partitioning: daily}
  mlflow.models.churn: {partitioning: none}
  scores.churn: {partitioning: daily}
jobs:
  churn_scores:
    kind: score
    inputs:
      - reporting.user_features
      - {dataset: mlflow.models.churn, mapping: latest, on_change: rerun_latest}
    outputs: [scores.churn]
    timeout_s: 600
    settings:
      model: models:/churn@champion
      key_columns: [user_id]
      output: ${LAKE}/scores/churn/date={partition}
"""


def score_events(settings: Settings, group: str) -> list:
    with EventIntake(LocalBus(settings.home / "bus.db"), settings, group_id=group) as intake:
        found = []
        while batch := intake.poll(1000, 0.2).events:
            found += [e for e in batch if e.dataset == "scores.churn"]
        return found


def test_promoting_a_champion_rescores_the_latest_partition(churn_registry, tmp_path: Path) -> None:
    uri = churn_registry.tracking_uri
    settings = Settings(home=tmp_path / "home", bus="local", mlflow_tracking_uri=uri)
    spec = parse_spec(SPEC, env={"LAKE": str(tmp_path / "lake")})
    assert registry.watched_aliases(spec) == [("churn", "champion")]
    features = write_features(tmp_path / "lake" / "user_features" / f"date={DAY}", rows=1500, seed=9)
    output = tmp_path / "lake" / "scores" / "churn" / f"date={DAY}"
    bus = LocalBus(settings.home / "bus.db")
    try:
        with Publisher(bus, settings) as publisher:
            publisher.publish(build_event("reporting.user_features", DAY, location=str(features),
                                          row_count=1500))
            publisher.flush()
            state = registry.state_path_for(settings.home)
            poller = registry.RegistryPoller(uri, registry.watched_aliases(spec), publisher, state_path=state)
            assert len(poller.poll_once()) == 1                     # first sighting: version 1
            with Coordinator(spec, settings) as coord:
                first = coord.run(until_idle=True, timeout_s=600)
                assert (first.succeeded, first.failed, first.blocked) == (1, 0, 0)
                assert set(pq.read_table(output)["model_version"].to_pylist()) == {1}

                registry.promote(uri, "churn", "2", publisher, state_path=state)   # moves and publishes
                assert poller.poll_once() == []                     # promote announced it already
                second = coord.run(until_idle=True, timeout_s=600)   # on_change: rerun_latest
                assert (second.runs_created, second.succeeded, second.failed) == (1, 1, 0)
    finally:
        registry.move_alias(uri, "churn", "champion", "1")
    scores = pq.read_table(output)
    assert scores.num_rows == 1500 and set(scores["model_version"].to_pylist()) == {2}
    events = score_events(settings, "observer")
    assert [(e.partition, e.attributes["model_version"]) for e in events] == [(DAY, "1"), (DAY, "2")]
    assert events[1].attributes["model_uri"] == "models:/churn/2" and events[1].row_count == 1500
