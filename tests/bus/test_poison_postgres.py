"""Poison that only PostgreSQL refuses, through the real broker into a real PostgreSQL store: an
event with a NUL character in a field the store keeps in a column of its own (event id,
partition, producer, producer run) was taken by the decoder and failed the turn's transaction
("unsupported Unicode escape sequence") — on every restart, so the good events behind it never
ran. Each is dead-lettered as invalid now, the good event runs, and a restart has nothing to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.bus.factory import open_bus
from coordinator.codec import encode
from coordinator.engine import Coordinator
from coordinator.settings import Settings
from coordinator.store import StateStore
from coordinator.store.deadletters import WRITTEN, DeadLetterBook
from tests.bus.poison import GOOD, NUL_POISON, spec, unchecked
from tests.conftest import unique

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def test_nul_characters_are_dead_lettered_and_the_good_event_behind_them_runs(
    kafka_postgres: dict, postgres_url: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.log"
    pipeline = spec(["sh", "-c", f"echo {{partition}} >> {ran}"]).model_copy(
        update={"accept_unknown_datasets": True}  # a dataset it does not name: recorded as is
    )
    settings = Settings(**kafka_postgres, consumer_group=unique("g"), instance_name=unique("i"))
    bad = [unchecked(**fields) for _, fields in NUL_POISON]
    bad.append(unchecked(dataset="elsewhere.x", partition="p\x00q"))  # no partitioning to check it
    bus = open_bus(settings)
    with bus.producer() as producer:
        for value in bad:
            producer.produce(settings.topic_events, value, key=b"raw.orders")
        producer.produce(settings.topic_events, encode(GOOD), key=b"raw.orders")
        producer.flush(30)

    with Coordinator(pipeline, settings, bus=bus) as coord:
        stats = coord.run(until_idle=True, timeout_s=90)
    assert (stats.dead_lettered, stats.succeeded, stats.failed) == (len(bad), 1, 0)
    assert ran.read_text().split() == [GOOD.partition]
    with StateStore(postgres_url) as store:
        rows = DeadLetterBook(store).rows(settings.consumer_group)
        assert sorted(r["reason"] for r in rows) == ["invalid"] * len(bad)
        assert {r["state"] for r in rows} == {WRITTEN}
        assert all("NUL character" in r["detail"] for r in rows), [r["detail"] for r in rows]

    with Coordinator(pipeline, settings, bus=bus) as again:  # a restart: nothing left to do
        stats = again.run(until_idle=True, timeout_s=60)
    assert (stats.dead_lettered, stats.succeeded, stats.failed) == (0, 0, 0)
    assert ran.read_text().split() == [GOOD.partition]
