"""Scoring one partition with the real churn model: in-process (both the direct scikit-learn
path and MLflow's pyfunc) and on Spark with spark_udf give the same predictions and the same
table layout."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coordinator.errors import ScoringError, SignatureMismatch
from coordinator.scoring import model as scoring_model
from coordinator.scoring.inprocess import score_parquet
from coordinator.scoring.resolve import resolve
from models import churn
from tests.scoring.conftest import write_features

pytestmark = pytest.mark.mlflow
SCORED_AT = datetime(2024, 6, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def champion(churn_registry):
    resolved = resolve("models:/churn@champion", churn_registry.tracking_uri)
    return scoring_model.load(resolved, churn_registry.tracking_uri)


@pytest.fixture(scope="module")
def partition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Several row groups and a small batch size: the scorer's batching is exercised too.
    return write_features(tmp_path_factory.mktemp("lake") / "user_features" / "date=2024-06-01",
                          rows=5000, seed=21, row_group_size=1500)


def read_sorted(path: Path | str) -> pa.Table:
    return pq.read_table(path).sort_by("user_id")


def test_inprocess_scores_every_row_with_the_model_it_resolved(champion, partition, tmp_path) -> None:
    assert champion.path == "sklearn"
    summary = score_parquet(champion, str(partition), str(tmp_path / "scores"), ["user_id"],
                            scored_at=SCORED_AT, batch_rows=1024)
    table = read_sorted(summary.location)
    assert summary.row_count == table.num_rows == 5000
    assert table.column_names == ["user_id", "p_stay", "p_churn", "model_name", "model_version", "scored_at"]
    assert table.schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    assert set(table["model_name"].to_pylist()) == {"churn"}
    assert set(table["model_version"].to_pylist()) == {1}
    assert set(table["scored_at"].to_pylist()) == {SCORED_AT}
    assert table["user_id"].to_pylist() == list(range(1, 5001))
    # The same numbers as the model's own predict_proba on the same rows.
    frame = churn.generate_users(5000, seed=21)[list(churn.FEATURES)]
    expected = champion.predict(frame)
    np.testing.assert_array_equal(table["p_churn"].to_numpy(), expected[:, 1])


def test_the_pyfunc_path_gives_the_same_predictions(champion, partition, churn_registry, tmp_path) -> None:
    through_pyfunc = scoring_model.load(champion.resolved, churn_registry.tracking_uri, direct=False)
    assert through_pyfunc.path == "pyfunc"
    a = read_sorted(score_parquet(champion, str(partition), str(tmp_path / "a"), ["user_id"]).location)
    b = read_sorted(score_parquet(through_pyfunc, str(partition), str(tmp_path / "b"), ["user_id"]).location)
    np.testing.assert_array_equal(a["p_churn"].to_numpy(), b["p_churn"].to_numpy())


def test_a_mismatch_blocks_before_anything_is_written(champion, tmp_path) -> None:
    table = churn.generate_features(100, seed=1)
    table = table.rename_columns(["user_id", "country_code", *table.column_names[2:]])
    table = table.set_column(3, "sessions_7d", table["sessions_7d"].cast(pa.string()))
    tmp_path.joinpath("bad").mkdir()
    pq.write_table(table, tmp_path / "bad" / "part-0.parquet")
    scores = tmp_path / "scores"
    write_features(scores, rows=3, seed=1)                 # an earlier output that must survive
    with pytest.raises(SignatureMismatch) as caught:
        score_parquet(champion, str(tmp_path / "bad"), str(scores), ["user_id"])
    assert caught.value.columns == ["country", "sessions_7d"]
    assert pq.read_table(scores).num_rows == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no staging left
    with pytest.raises(ScoringError, match="key column"):
        score_parquet(champion, str(tmp_path / "bad"), str(scores), ["account_id"])


@pytest.mark.spark
def test_inprocess_and_spark_give_the_same_scores(champion, partition, churn_registry, spark,
                                                  tmp_path) -> None:
    from coordinator.scoring.spark import score_spark

    inprocess = score_parquet(champion, str(partition), str(tmp_path / "inprocess"), ["user_id"],
                              scored_at=SCORED_AT)
    shape = scoring_model.describe(champion.resolved, churn_registry.tracking_uri)
    on_spark = score_spark(spark, shape, churn_registry.tracking_uri, str(partition), str(tmp_path / "spark"),
                           ["user_id"], scored_at=SCORED_AT)
    assert on_spark.row_count == inprocess.row_count == 5000
    a, b = read_sorted(inprocess.location), read_sorted(on_spark.location)
    assert b.column_names == a.column_names
    assert [f.type for f in b.schema] == [f.type for f in a.schema]
    for column in ("user_id", "model_name", "model_version", "scored_at"):
        assert b[column].to_pylist() == a[column].to_pylist(), column
    np.testing.assert_allclose(b["p_churn"].to_numpy(), a["p_churn"].to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(b["p_stay"].to_numpy(), a["p_stay"].to_numpy(), rtol=0, atol=1e-12)
