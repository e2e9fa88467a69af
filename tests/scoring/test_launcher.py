"""The `score` kind end to end through its child process: the exact model version lands in the
run's details and the output event; moving the alias re-scores with the new version; an input
that does not fit the signature blocks the run with the columns named."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from coordinator.bus.factory import open_bus
from coordinator.codec import codec_for
from coordinator.errors import LaunchError
from coordinator.launchers.base import InputRef, RunContext, RunResult
from coordinator.launchers.registry import build_launcher
from coordinator.launchers.score import ScoreLauncher, ScoreSettings
from coordinator.publish import Publisher
from coordinator.scoring import registry
from coordinator.settings import Settings
from models import churn
from tests.scoring.conftest import write_features

pytestmark = pytest.mark.mlflow
PARTITION = "2024-06-01"


def job_settings(base: Path, **overrides: object) -> dict[str, object]:
    return {"model": "models:/churn@champion", "input": "reporting.user_features", "key_columns": ["user_id"],
            "output": "lake/scores/churn/date={partition}", "base_dir": str(base), **overrides}


def context(tmp_path: Path, source: Path, run: str, settings: dict[str, object]) -> RunContext:
    inputs = (InputRef("mlflow.models.churn", None, f"model-{run}"),        # the registry input comes first
              InputRef("reporting.user_features", PARTITION, f"features-{run}", location=str(source)))
    return RunContext(run_id=run, job="score_churn", partition=PARTITION, attempt=1, settings=settings,
                      inputs=inputs, outputs=("scores.churn",), workdir=tmp_path / "runs" / run,
                      timeout_s=600)


def launch(launcher: ScoreLauncher, ctx: RunContext) -> RunResult:
    handle = launcher.start(ctx)
    assert handle.kind == "score" and handle.data["pid"]
    return launcher.wait(handle, ctx)


@pytest.fixture
def settings(tmp_path: Path, churn_registry) -> Settings:
    return Settings(home=tmp_path / "home", bus="local", mlflow_tracking_uri=churn_registry.tracking_uri)


def test_moving_the_alias_rescores_with_the_new_version(settings, churn_registry, tmp_path) -> None:
    source = write_features(tmp_path / "user_features" / f"date={PARTITION}", rows=2000, seed=5)
    launcher = build_launcher("score", settings)
    assert isinstance(launcher, ScoreLauncher)

    first = launch(launcher, context(tmp_path, source, "r1", job_settings(tmp_path)))
    assert first.succeeded, (first.error, Path(first.log_path).read_text())
    assert first.details["model_version"] == "1" and first.details["model_uri"] == "models:/churn/1"
    (out,) = first.outputs
    location = tmp_path / "lake" / "scores" / "churn" / f"date={PARTITION}"
    assert (out.dataset, out.location, out.row_count) == ("scores.churn", str(location), 2000)
    assert out.attributes["model_version"] == "1" and out.attributes["model_name"] == "churn"
    assert [c.name for c in out.columns] == ["user_id", "p_stay", "p_churn", "model_name", "model_version",
                                             "scored_at"]
    before = pq.read_table(location)
    assert set(before["model_version"].to_pylist()) == {1}

    try:
        with Publisher(open_bus(settings), settings) as publisher:
            previous, event = registry.promote(churn_registry.tracking_uri, "churn", "2", publisher)
        assert previous == "1"
        consumer = open_bus(settings).consumer("test", [settings.topic_events])
        (message,) = consumer.poll(timeout=5)
        consumer.close()
        on_bus = codec_for(settings).decode(message.value)
        assert on_bus.event_id == event.event_id
        assert (on_bus.dataset, on_bus.partition) == ("mlflow.models.churn", None)
        assert on_bus.attributes == {"model_version": "2", "alias": "champion",
                                     "model_uri": "models:/churn/2"}

        second = launch(launcher, context(tmp_path, source, "r2", job_settings(tmp_path)))
        assert second.succeeded, second.error
        assert second.details["model_version"] == "2"
        assert second.outputs[0].attributes["model_version"] == "2"
        after = pq.read_table(location)
        assert set(after["model_version"].to_pylist()) == {2}
        assert after["user_id"].to_pylist() == before["user_id"].to_pylist()
        assert after["p_churn"].to_pylist() != before["p_churn"].to_pylist()     # another model
    finally:
        registry.move_alias(churn_registry.tracking_uri, "churn", "champion", "1")


def test_a_signature_mismatch_blocks_the_run_naming_the_columns(settings, tmp_path) -> None:
    table = churn.generate_features(300, seed=2)
    renamed = ["days_idle" if n == "days_since_last_visit" else n for n in table.column_names]
    table = table.rename_columns(renamed)
    table = table.set_column(table.schema.get_field_index("plan"), "plan",
                             pa.array(range(300), pa.int64()))
    source = tmp_path / "bad" / f"date={PARTITION}"
    source.mkdir(parents=True)
    pq.write_table(table, source / "part-0.parquet")

    result = launch(ScoreLauncher(settings), context(tmp_path, source, "r3", job_settings(tmp_path)))
    assert not result.succeeded
    assert result.details["blocked"] is True
    assert result.details["mismatched_columns"] == ["plan", "days_since_last_visit"]
    assert result.error.startswith("blocked: ")
    assert "plan is int64 (model expects string)" in result.error
    assert "days_since_last_visit is missing" in result.error
    assert result.details["model_version"] == "1"          # resolved before the check, still recorded
    assert result.outputs == ()
    assert not (tmp_path / "lake").exists()


def test_settings_are_validated_when_the_spec_loads(tmp_path) -> None:
    ok = ScoreSettings.model_validate(job_settings(tmp_path))
    assert ok.engine == "inprocess" and ok.key_columns == ("user_id",)
    assert ok.output_location("scores.churn", "j", "2024-06-01") == str(
        tmp_path / "lake" / "scores" / "churn" / "date=2024-06-01")
    as_written = {k: v for k, v in job_settings(tmp_path).items() if k != "base_dir"}
    from_spec = ScoreSettings.model_validate(as_written, context={"spec_dir": str(tmp_path / "specs")})
    assert from_spec.base_dir == str((tmp_path / "specs").resolve())
    for bad in ({"engine": "gpu"}, {"key_columns": []}, {"model": "churn"}, {"modle": "x"}):
        with pytest.raises(ValidationError):
            ScoreSettings.model_validate(job_settings(tmp_path, **bad))
    with pytest.raises(LaunchError, match="needs a partition"):
        ok.output_location("scores.churn", "j", None)


def test_the_input_to_score_skips_the_registry_and_needs_a_location(settings, tmp_path) -> None:
    launcher = ScoreLauncher(settings)
    unnamed = job_settings(tmp_path, input=None)
    ctx = context(tmp_path, tmp_path / "features", "r4", unnamed)
    argv = launcher.command(ctx, ScoreSettings.model_validate(unnamed))
    assert argv[argv.index("--input") + 1] == str(tmp_path / "features")
    assert argv[argv.index("--tracking-uri") + 1] == settings.mlflow_tracking_uri
    missing = RunContext(run_id="r5", job="score_churn", partition=PARTITION, attempt=1, settings=unnamed,
                         inputs=(InputRef("reporting.user_features", PARTITION, "e"),), outputs=(),
                         workdir=tmp_path)
    with pytest.raises(LaunchError, match="has no location"):
        launcher.start(missing)
