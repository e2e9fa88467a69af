"""The same journey on the real stack: Kafka for the bus, PostgreSQL for the state store and as
the product database, dlt and dbt-duckdb into the lake, Spark local, and a real MLflow store —
checked against the model itself."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import unique
from tests.topic_end import read_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.spark, pytest.mark.mlflow,
              pytest.mark.timeout(900)]

USERS = 250
LATEST = "2025-06-03"
JOBS = ("load_app", "reporting", "user_features", "churn_scores", "push_user_scores")


@pytest.fixture
def topics(kafka_bootstrap: str):
    """Fresh event and dead-letter topic names (the demo creates them), deleted afterwards."""
    from confluent_kafka.admin import AdminClient

    names = {"events": unique("demo-events").replace("_", "-"), "dead": unique("demo-dead").replace("_", "-")}
    yield names
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics(list(names.values())).values():
        with contextlib.suppress(Exception):   # a topic the run never created: nothing to clean
            future.result(30)


def _consume_all(bootstrap: str, topic: str) -> list:
    from coordinator.codec import codec_for
    from coordinator.settings import Settings

    codec = codec_for(Settings())
    return [codec.decode(message.value()) for message in read_to_end(bootstrap, topic)]


def test_journey_on_kafka_postgres_spark_and_mlflow(tmp_path: Path, kafka_bootstrap: str, postgres_url: str,
                                                     mlflow_server: str, topics: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORD_", "MLFLOW_"))}
    env.update(COORD_BUS="kafka", COORD_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
               COORD_TOPIC_EVENTS=topics["events"], COORD_TOPIC_DEAD_LETTER=topics["dead"],
               COORD_CONSUMER_GROUP=unique("demo"), COORD_STATE_URL=postgres_url,
               COORD_PRODUCT_DB_URL=postgres_url, COORD_MLFLOW_TRACKING_URI=mlflow_server,
               COORD_SPARK_MASTER="local[2]")
    home = tmp_path / "home"
    coord = Path(sys.executable).with_name("coord")
    done = subprocess.run([str(coord), "demo", "--json", "--home", str(home), "--days", "1",
                           "--users", str(USERS)], env=env, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout)
    assert summary["succeeded"], summary
    assert summary["product_db"].startswith("postgresql+psycopg://")
    assert [(r["job"], r["partition"], r["state"]) for r in summary["runs"]] == [
        (job, LATEST, "succeeded") for job in JOBS]
    assert summary["rows_pushed"] == USERS

    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(text("select job, state from coord_runs order by job")).all()
            scores = conn.execute(text("select user_id, churn_probability, model_version from user_scores "
                                       "where score_date = :day order by user_id"), {"day": LATEST}).all()
    finally:
        engine.dispose()
    assert sorted(runs) == sorted((job, "succeeded") for job in JOBS)       # the state is in PostgreSQL
    assert [s.user_id for s in scores] == list(range(1, USERS + 1))        # one score per user

    # The bus was Kafka: the app's export, the tick and the coordinator's own completions are on it.
    on_bus = _consume_all(kafka_bootstrap, topics["events"])
    assert {(e.producer, e.dataset) for e in on_bus} >= {
        ("app", "app.export"), ("coordinator.schedule", "schedule.daily_0600"),
        ("coordinator", "raw.users"), ("coordinator", "raw.events"),
        ("coordinator", "reporting.users"), ("coordinator", "reporting.events"),
        ("coordinator", "reporting.user_features"), ("coordinator", "scores.churn"),
        ("coordinator", "product.user_scores")}

    # The scores are the model's own predictions on the features table.
    import mlflow.pyfunc

    from models.churn import FEATURES
    from models.registry import using_store

    versions = {s.model_version for s in scores}
    assert len(versions) == 1
    with using_store(mlflow_server):           # the server the demo registered the model in
        model = mlflow.pyfunc.load_model(f"models:/churn/{versions.pop()}")
    features = pq.read_table(home / "lake" / "reporting" / "user_features" / f"date={LATEST}").to_pandas()
    features = features.sort_values("user_id").reset_index(drop=True)
    predicted = np.asarray(model.predict(features[list(FEATURES)]))
    assert predicted.shape == (USERS, 2)
    np.testing.assert_allclose([s.churn_probability for s in scores], predicted[:, 1], rtol=0, atol=1e-9)
    assert features["user_id"].tolist() == [s.user_id for s in scores]
