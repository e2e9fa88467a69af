"""The registry as an input: the poller announces alias moves once each, across restarts, and
`coord model promote` moves the alias and publishes — both onto the real (local) bus."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from coordinator.bus.factory import open_bus
from coordinator.cli import build_app
from coordinator.codec import codec_for
from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.scoring import registry
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec

pytestmark = pytest.mark.mlflow


def events_on_bus(settings: Settings, group: str) -> list[CompletionEvent]:
    codec = codec_for(settings)
    with open_bus(settings).consumer(group, [settings.topic_events]) as consumer:
        return [codec.decode(m.value) for m in consumer.poll(timeout=2)]


def test_the_poller_publishes_each_move_once_and_remembers_across_restarts(churn_registry, tmp_path) -> None:
    uri = churn_registry.tracking_uri
    settings = Settings(home=tmp_path / "home", bus="local")
    state = tmp_path / "home" / "aliases.json"
    watched = [("churn", "champion"), ("churn", "nobody-yet")]
    try:
        with Publisher(open_bus(settings), settings) as publisher:
            poller = registry.RegistryPoller(uri, watched, publisher, state_path=state)
            first = poller.poll_once()
            assert [e.attributes["model_version"] for e in first] == ["1"]      # first sighting
            assert poller.poll_once() == []
            registry.move_alias(uri, "churn", "champion", "2")
            (moved,) = poller.poll_once()
            assert moved.dataset == "mlflow.models.churn" and moved.partition is None
            assert moved.attributes == {"model_version": "2", "alias": "champion",
                                        "model_uri": "models:/churn/2"}
            restarted = registry.RegistryPoller(uri, watched, publisher, state_path=state)
            assert restarted.poll_once() == []
        published = events_on_bus(settings, "g1")
        assert [e.event_id for e in published] == [first[0].event_id, moved.event_id]
    finally:
        registry.move_alias(uri, "churn", "champion", "1")


def test_coord_model_promote_moves_the_alias_and_publishes(churn_registry, tmp_path: Path,
                                                           monkeypatch) -> None:
    uri = churn_registry.tracking_uri
    monkeypatch.setenv("COORD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COORD_BUS", "local")
    monkeypatch.setenv("COORD_MLFLOW_TRACKING_URI", uri)
    runner = CliRunner()
    try:
        result = runner.invoke(build_app(), ["model", "promote", "churn", "2"])
        assert result.exit_code == 0, result.output
        assert "version 1 → 2" in result.output
        assert registry.current_version(uri, "churn", "champion") == "2"
        (event,) = events_on_bus(Settings(), "g2")
        assert event.dataset == "mlflow.models.churn" and event.attributes["model_version"] == "2"

        shown = runner.invoke(build_app(), ["model", "show", "churn"])
        assert shown.exit_code == 0 and "champion" in shown.output

        # promote recorded what it announced: a watcher on the same home stays quiet ...
        quiet = runner.invoke(build_app(), ["model", "watch", "churn@champion", "--once"])
        assert quiet.exit_code == 0 and "published" not in quiet.output
        # ... until the alias is moved elsewhere (the MLflow UI, a training pipeline).
        registry.move_alias(uri, "churn", "champion", "1")
        watched = runner.invoke(build_app(), ["model", "watch", "churn@champion", "--once"])
        assert watched.exit_code == 0 and "mlflow.models.churn: champion → version 1" in watched.output
        assert [e.attributes["model_version"] for e in events_on_bus(Settings(), "g3")] == ["2", "1"]

        missing = runner.invoke(build_app(), ["model", "promote", "churn", "99"])
        assert missing.exit_code == 2 and "cannot point churn@champion at version 99" in missing.output
        assert registry.current_version(uri, "churn", "champion") == "1"
    finally:
        registry.move_alias(uri, "churn", "champion", "1")


def test_watched_aliases_come_from_score_jobs_that_take_the_registry_as_input() -> None:
    spec = PipelineSpec.model_validate({
        "datasets": {"reporting.user_features": {"partitioning": "daily"}, "mlflow.models.churn": {},
                     "scores.churn": {"partitioning": "daily"}, "scores.other": {"partitioning": "daily"}},
        "jobs": {
            "score_churn": {"kind": "score", "outputs": ["scores.churn"],
                            "inputs": [{"dataset": "reporting.user_features"},
                                       {"dataset": "mlflow.models.churn", "mapping": "latest"}],
                            "settings": {"model": "models:/churn@champion"}},
            "pinned": {"kind": "score", "outputs": ["scores.other"],
                       "inputs": [{"dataset": "reporting.user_features"}],
                       "settings": {"model": "models:/churn/1"}},
        }})
    assert registry.watched_aliases(spec) == [("churn", "champion")]
