"""On the real Kafka broker: the bus lag measured from outside the engine's consumer group, and the
watcher reading dead letters (counted by reason) in a group of its own."""

from __future__ import annotations

import pytest

from coordinator.bus.kafka import KafkaBus
from coordinator.events import CompletionEvent
from coordinator.intake import EventIntake
from coordinator.metrics import Metrics, group_lag
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.watch import Watcher
from tests.conftest import unique

pytestmark = pytest.mark.kafka


def test_group_lag_and_dead_letters_on_kafka(kafka_bootstrap, kafka_topic, tmp_path):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    dead = unique("dl").replace("_", "-")
    admin.create_topics([NewTopic(dead, num_partitions=1, replication_factor=1)])[dead].result(30)
    try:
        settings = Settings(home=tmp_path, bus="kafka", kafka_bootstrap_servers=kafka_bootstrap,
                            topic_events=kafka_topic, topic_dead_letter=dead, consumer_group=unique("g"))
        bus = KafkaBus(kafka_bootstrap)
        lag = group_lag(settings)
        assert lag() == 0
        with Publisher(bus, settings) as publisher:
            publisher.publish_many([CompletionEvent(dataset="raw.k", partition=f"2024-01-0{i}")
                                    for i in range(1, 6)])
            publisher.flush()
        with bus.producer() as producer:
            producer.produce(kafka_topic, b"garbage")
        assert lag() == 6  # nothing committed by the group yet

        with EventIntake(bus, settings) as intake:
            seen = 0
            for _ in range(60):
                batch = intake.poll(100, 1.0)
                seen += len(batch)
                intake.commit(batch)
                if seen == 6:
                    break
            assert seen == 6 and lag() == 0  # the intake dead-lettered the garbage and committed all

        metrics = Metrics()
        watcher = Watcher(settings, bus, [metrics])
        try:
            n = 0
            for _ in range(30):
                n += watcher.tick()
                if n:
                    break
            assert n == 1
            [sample] = [s for s in metrics.dead_letters.collect()[0].samples if s.name.endswith("_total")]
            assert sample.value == 1 and sample.labels["reason"]
        finally:
            watcher.stop()
    finally:
        admin.delete_topics([dead])[dead].result(30)
