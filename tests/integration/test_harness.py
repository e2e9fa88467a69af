"""Proves the harness: each real service answers and does real work."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa


@pytest.mark.kafka
def test_kafka_round_trip(kafka_bootstrap: str, kafka_topic: str) -> None:
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    payloads = [f"m{i}".encode() for i in range(10)]
    for p in payloads:
        producer.produce(kafka_topic, key=b"same-key", value=p)
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([kafka_topic])
    got: list[bytes] = []
    try:
        for _ in range(60):
            for msg in consumer.consume(100, timeout=1.0):
                assert msg.error() is None
                got.append(msg.value())
            if len(got) >= len(payloads):
                break
    finally:
        consumer.close()
    assert got == payloads  # one key, one partition: publish order is kept


@pytest.mark.postgres
def test_postgres_table(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id int PRIMARY KEY, v text)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 'a'), (2, 'b')"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT v FROM t ORDER BY id")).scalars().all() == ["a", "b"]
        assert "PostgreSQL" in conn.execute(sa.text("SELECT version()")).scalar_one()
    engine.dispose()


@pytest.mark.mysql
def test_mariadb_table(mysql_url: str) -> None:
    engine = sa.create_engine(mysql_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id int PRIMARY KEY, v varchar(10))"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 'a'), (2, 'b')"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT v FROM t ORDER BY id")).scalars().all() == ["a", "b"]
        assert "MariaDB" in conn.execute(sa.text("SELECT version()")).scalar_one()
    engine.dispose()


@pytest.mark.spark
def test_spark_local(spark) -> None:
    assert spark.range(1000).selectExpr("sum(id) AS s").collect()[0]["s"] == 499500


@pytest.mark.mlflow
def test_mlflow_log_and_load(mlflow_store) -> None:
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    model = LogisticRegression().fit(x, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="m", registered_model_name="harness_model")
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert list(loaded.predict(x)) == [0, 0, 1, 1]
    assert mlflow.MlflowClient().get_registered_model("harness_model").name == "harness_model"
