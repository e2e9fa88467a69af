"""A Kafka outage no longer refuses POST /events where an engine runs (coordinator/handover.py):
on a private broker that is stopped and started again, and a PostgreSQL store, an event posted
during the outage is answered 202 (durable in the store's outbox), its run runs, and the outbox
publishes it once the broker is back."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from coordinator.api.app import create_app
from coordinator.bus.base import TopicSpec
from coordinator.bus.factory import open_bus
from coordinator.engine import Coordinator
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from tests.bus.broker import LIBS, PrivateBroker
from tests.conftest import missing, unique
from tests.events.conftest import read_events

TOKEN = "handover-outage-token"


def _wait(what, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def test_an_event_posted_while_kafka_is_down_runs_and_reaches_the_bus_once_it_is_back(
    tmp_path: Path, postgres_url: str
) -> None:
    if not (LIBS / ".complete").exists() or shutil.which("java") is None:
        missing("a private Kafka broker", "needs the jars of `scripts/services up kafka` and Java")
    ledger = tmp_path / "ledger.txt"
    broker = PrivateBroker(tmp_path / "kafka")
    broker.start()
    try:
        settings = Settings(
            home=tmp_path / "home", bus="kafka", kafka_bootstrap_servers=broker.bootstrap,
            topic_events="ev", topic_dead_letter="dl", consumer_group=unique("outage"),
            state_url=postgres_url, api_token=SecretStr(TOKEN),
        )  # fmt: skip
        open_bus(settings).ensure_topics([TopicSpec("ev", 2), TopicSpec("dl", 1)])
        job = tmp_path / "job.py"
        job.write_text('import sys\nwith open(sys.argv[1], "a") as f:\n    f.write(sys.argv[2] + "\\n")\n')
        command = f"[{sys.executable}, {job}, {ledger}, '{{partition}}']"
        spec = parse_spec(
            "datasets: {raw.a: {partitioning: daily}}\n"
            "jobs:\n  after: {kind: command, inputs: [raw.a], outputs: [out.a], "
            f"settings: {{command: {command}}}}}\n"
        )
        ran = lambda: ledger.read_text().split() if ledger.exists() else []  # noqa: E731
        with StateStore(postgres_url) as store, Coordinator(spec, settings, store=store) as coord:
            stop = threading.Event()
            loop = threading.Thread(target=coord.run, kwargs={"stop": stop.is_set}, daemon=True)
            loop.start()
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with TestClient(create_app(settings, store=store, handover=lambda: coord.handover)) as client:
                _wait(lambda: coord.handover.is_open, 30, "the loop did not start")
                before = client.post("/events", json={"dataset": "raw.a", "partition": "2024-01-01"},
                                     headers=headers)
                assert before.status_code == 202, before.text
                _wait(lambda: ran() == ["2024-01-01"], 30, f"ran {ran()}")

                broker.stop()
                during = client.post("/events", json={"dataset": "raw.a", "partition": "2024-01-02"},
                                     headers=headers)
                assert during.status_code == 202, during.text  # durable in the store's outbox
                _wait(lambda: ran() == ["2024-01-01", "2024-01-02"], 30, f"ran {ran()}")
                with store.begin() as tx:
                    assert tx.outbox_count() >= 1  # not on the bus yet

                broker.start()
                _wait(lambda: _outbox_empty(store), 60, "the outbox was not published after the outage")
            stop.set()
            loop.join(30)
        [posted] = during.json()["event_ids"]
        on_bus = read_events(settings, 4)  # two posted, two outputs
        assert posted in {e.event_id for e in on_bus if e.dataset == "raw.a"}
        assert ran() == ["2024-01-01", "2024-01-02"]  # each ran once
    finally:
        broker.stop()


def _outbox_empty(store: StateStore) -> bool:
    with store.begin() as tx:
        return tx.outbox_count() == 0
