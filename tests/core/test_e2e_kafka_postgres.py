"""End to end through the real Kafka broker and PostgreSQL: a three-level DAG over several days,
with events published out of order and duplicated."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.bus.factory import open_bus
from coordinator.engine import Coordinator
from coordinator.intake import EventIntake
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.store import StateStore
from tests.conftest import unique
from tests.core.dag import DAYS, check_dag, dag_spec, shuffled_events

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def test_dag_over_kafka_and_postgres(
    kafka_bootstrap: str, kafka_topic: str, postgres_url: str, tmp_path: Path
):
    settings = Settings(
        home=tmp_path / "home",
        bus="kafka",
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_events=kafka_topic,
        topic_dead_letter=kafka_topic + "-dlq",
        consumer_group=unique("coord"),
        state_url=postgres_url,
    )
    log = tmp_path / "ran.log"
    bus = open_bus(settings)
    with Publisher(bus, settings) as publisher:
        publisher.publish_many(shuffled_events(seed=11))
        publisher.flush()
    with Coordinator(dag_spec(log), settings, bus=bus) as coord:
        stats = coord.run(until_idle=True, timeout_s=90)
    assert (stats.runs_created, stats.succeeded, stats.failed) == (12, 12, 0)
    check_dag(log)
    with StateStore(postgres_url) as store, store.begin() as tx:
        runs = tx.list_runs(limit=None)
        assert sorted((r.job, r.partition, r.state) for r in runs) == sorted(
            (j, d, "succeeded") for j in ("join", "left", "right", "final") for d in DAYS
        )
        assert tx.outbox_count() == 0
    # the coordinator's own completion events are on the topic, once each
    with EventIntake(bus, settings, group_id=unique("observer")) as intake:
        seen = []
        for _ in range(40):
            seen += [e for e in intake.poll(500, 0.5).events if e.producer == "coordinator"]
            if len(seen) >= 12:
                break
    assert len(seen) == 12 and len({e.event_id for e in seen}) == 12
