"""Two coordinators on the real Kafka broker and PostgreSQL, each in its own consumer group (so
each also receives every tick the other publishes), firing a schedule that ticks every second
on the real clock: each scheduled second is recorded once, run once and on the topic once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from coordinator.bus.factory import open_bus
from coordinator.engine import Coordinator
from coordinator.intake import EventIntake
from coordinator.launchers.stub import StubLauncher
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.ticker import attach
from tests.conftest import unique

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SPEC = parse_spec("""
schedules:
  every_second: {cron: "* * * * * *", partition: none, catch_up: none, grace_s: 30}
jobs:
  tock: {kind: command, inputs: [schedule.every_second], outputs: [tocked], settings: {command: x}}
""")


def test_two_instances_on_kafka_record_run_and_publish_each_tick_once(
    kafka_postgres: dict, postgres_url: str, tmp_path: Path
):
    base = kafka_postgres
    stub = StubLauncher(kind="command")
    fired: dict[str, int] = {}
    launched: dict[str, int] = {}

    def serve(name: str) -> None:
        settings = Settings(**base, instance_name=name, consumer_group=unique(name))
        with Coordinator(SPEC, settings, launchers={"command": stub}) as coord:
            ticker = attach(coord)
            assert ticker is not None
            launched[name] = coord.run(timeout_s=8).launched
            fired[name] = ticker.fired

    threads = [threading.Thread(target=serve, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with StateStore(postgres_url) as store, store.begin() as tx:
        ticks = tx.version_history("schedule.every_second", None)
        runs = tx.list_runs("tock", limit=None)
    assert len(ticks) >= 4, ticks  # the instances ran side by side for seconds
    assert sum(fired.values()) == len(ticks), fired  # each scheduled second recorded by one of them
    assert len({eid for _, eid in ticks}) == len(ticks)
    assert len(runs) == len(ticks) and sum(launched.values()) == len(ticks), launched
    assert len(stub.ran("tock")) == len(ticks)  # never launched twice
    with EventIntake(open_bus(Settings(**base)), Settings(**base), group_id=unique("observer")) as intake:
        seen = []
        for _ in range(20):
            batch = intake.poll(1000, 0.5).events
            seen += [e.event_id for e in batch if e.dataset == "schedule.every_second"]
            if len(seen) >= len(ticks) and not batch:
                break
    assert sorted(seen) == sorted(eid for _, eid in ticks)  # each on the topic once
