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


def test_dag_over_kafka_and_postgres(kafka_postgres: dict, postgres_url: str, tmp_path: Path):
    settings = Settings(**kafka_postgres, consumer_group=unique("coord"))
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


def test_two_instances_share_the_work_and_never_launch_a_run_twice(
    kafka_postgres: dict, postgres_url: str, tmp_path: Path
):
    import threading

    from coordinator.store.schema import metadata

    with StateStore(postgres_url) as store, store.begin() as tx:  # a clean store (the module shares one)
        for table in reversed(metadata.sorted_tables):
            if table.name != "coord_schema_version":
                tx.conn.execute(table.delete())
    group = unique("coord")
    log = tmp_path / "ran.log"
    base = dict(kafka_postgres, consumer_group=group)
    bus = open_bus(Settings(**base))
    with Publisher(bus, Settings(**base)) as publisher:
        publisher.publish_many(shuffled_events(seed=5))
        publisher.flush()
    results: dict[str, object] = {}

    def serve(name: str) -> None:
        settings = Settings(**base, instance_name=name)
        with Coordinator(dag_spec(log), settings, idle_grace_s=4.0) as coord:
            results[name] = coord.run(until_idle=True, timeout_s=120)

    threads = [threading.Thread(target=serve, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    check_dag(log)  # every run exactly once, in order
    launched = {n: s.launched for n, s in results.items()}
    assert sum(launched.values()) == 12, launched
    with StateStore(postgres_url) as store, store.begin() as tx:
        runs = tx.list_runs(limit=None)
        assert len(runs) == 12 and {r.state for r in runs} == {"succeeded"}
