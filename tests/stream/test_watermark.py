"""The watermark on the real broker, over a click topic of two partitions: one far behind holds
it back (its backlog is not made late by the other running ahead), one idle and caught up to its
end does not (the other's hours close all the same)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from coordinator.service import Service
from coordinator.store import StateStore
from coordinator.store import schema as S
from tests.stream.streams import DAY, kafka_settings, serve_during, state, stream_spec, wait_for


def _produce(kafka_bootstrap: str, topic: str, clicks: list[tuple[int, float]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for partition, ts in clicks:
        producer.produce(topic, json.dumps({"ts": ts}).encode(), partition=partition)
    producer.flush(30)


def _recorded_rows(settings) -> dict[str, int]:
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        p = S.partitions.c
        rows = tx.conn.execute(select(p.partition_key, p.row_count).where(p.dataset == "stream.clicks"))
        return {key: count for key, count in rows}


def test_a_partition_far_behind_holds_the_watermark_back(kafka_bootstrap: str, topics: dict, tmp_path: Path):
    backlog = [(1, DAY + i % 3000) for i in range(3000)]  # partition 1: 3,000 clicks of hour 00
    ahead = [(0, DAY + 300), (0, DAY + 3 * 3600 + 60)]  # partition 0: hour 00, then hour 03
    _produce(kafka_bootstrap, topics["clicks"], ahead + backlog)  # all there before the worker reads
    settings = kafka_settings(tmp_path, kafka_bootstrap, topics)
    folder = settings.home / "streams" / "clicks_hourly"
    total = len(backlog) + len(ahead)

    def scenario(service: Service) -> None:
        wait_for(
            "every click applied",
            lambda: (
                state(folder).get("counts", {}).get("events", 0)
                + state(folder).get("counts", {}).get("late", 0)
                == total
            ),
            timeout_s=90,
        )
        wait_for("hour 00 recorded", lambda: "2024-06-01T00" in _recorded_rows(settings))

    serve_during(stream_spec(topics["clicks"], "lateness_s: 0"), settings, scenario)
    saved = state(folder)
    assert saved["counts"]["late"] == 0 and saved["counts"]["events"] == total
    assert _recorded_rows(settings) == {"2024-06-01T00": 3001}  # hour 03 stays open
    assert saved["watermark"] == DAY + 3 * 3600 + 60  # all caught up: the largest event time


def test_an_idle_partition_caught_up_does_not_hold_the_watermark(
    kafka_bootstrap: str, topics: dict, tmp_path: Path
):
    settings = kafka_settings(tmp_path, kafka_bootstrap, topics)
    folder = settings.home / "streams" / "clicks_hourly"

    def scenario(service: Service) -> None:
        wait_for("the worker", lambda: state(folder).get("generation"))
        _produce(kafka_bootstrap, topics["clicks"], [(0, DAY + h * 3600 + 60) for h in range(4)])
        wait_for("hours 00..02 recorded", lambda: len(_recorded_rows(settings)) == 3, timeout_s=90)

    serve_during(stream_spec(topics["clicks"], "lateness_s: 0"), settings, scenario)
    assert _recorded_rows(settings) == {f"2024-06-01T0{h}": 1 for h in range(3)}
    assert state(folder)["partition_time"] == {f"{topics['clicks']}:0": DAY + 3 * 3600 + 60}
