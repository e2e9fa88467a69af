"""The streaming example's journey on the real broker and Spark: a day of clicks becomes 24
hourly partitions, and the daily Spark rollup (jobs/hourly_to_daily.py over the windows' Parquet files)
runs once, on all of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer

from coordinator.spec import parse_spec
from coordinator.store import StateStore
from tests.conftest import missing, unique
from tests.spark.conftest import SPARK_CONF
from tests.stream.streams import clicks, kafka_settings, serve_during, state, wait_for


def test_24_closed_hours_run_the_daily_spark_rollup_once(kafka_bootstrap: str, topics: dict, tmp_path: Path):
    if shutil.which("java") is None:
        missing("Spark", "no Java runtime")
    repo = Path(__file__).resolve().parents[2]
    spec = parse_spec(
        (repo / "examples" / "streaming" / "pipeline.yaml")
        .read_text()
        .replace("topic: web.clicks", f"topic: {topics['clicks']}\n      group: {unique('g')}")
        .replace("lateness_s: 600", "lateness_s: 7200"),
        base_dir=tmp_path,
    )
    settings = kafka_settings(
        tmp_path, kafka_bootstrap, topics, spark_master="local[1]", spark_conf=SPARK_CONF
    )
    folder = settings.home / "streams" / "clicks_hourly"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    rollups = []

    def journey(service) -> None:
        for partition, value in clicks(0, 26):  # the day, and the next day's first hours close it
            producer.produce(topics["clicks"], json.dumps(value).encode(), partition=partition)
        producer.flush(30)
        wait_for("the day's 24 hours closed", lambda: len(state(folder).get("announced", [])) == 24)
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": unique("check"),
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([topics["events"]])
        try:
            for _ in range(600):
                message = consumer.poll(0.5)
                if message is not None and not message.error() and message.key() == b"reporting.clicks_daily":
                    rollups.append(message)
                    break
        finally:
            consumer.close()

    serve_during(spec, settings, journey)
    assert len(rollups) == 1, "no daily rollup within 5 minutes"
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        runs = tx.list_runs("clicks_daily", limit=None)
    assert [(r.partition, r.state) for r in runs] == [("2024-06-01", "succeeded")]
    output = tmp_path / "warehouse" / "clicks_daily" / "date=2024-06-01"
    rows = pq.read_table(output).to_pylist()
    assert sorted((r["user_id"], r["events"], r["hours_active"]) for r in rows) == [
        ("u1", 48, 24),
        ("u2", 48, 24),
        ("u3", 48, 24),
    ]
