"""POST /events handed to the engine of its process (coordinator/handover.py, api/events.py), on a
PostgreSQL store and the embedded bus: the event, its run and its audit row are committed before
the request answers, and the event reaches the bus once, through the outbox, coming back as the
engine's own (one run, not two). Without a loop taking them — stopped, never started, or its
transaction failing — the request publishes and audits itself, at once; a publish the bus
refused is never audited."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from coordinator.api.app import create_app
from coordinator.engine import Coordinator
from coordinator.handover import HANDOVER_S, Handover, settle
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.store import audit as A
from tests.conftest import unique
from tests.events.conftest import read_events

TOKEN = "handover-test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _published(store: StateStore, dataset: str) -> list[A.AuditRow]:
    with store.begin() as tx:
        return [r for r in A.recent(tx) if r.action == "publish" and r.job == dataset]


def _post(client: TestClient, dataset: str, partition: str = "2024-01-01"):
    return client.post("/events", json={"dataset": dataset, "partition": partition}, headers=HEADERS)


def _settings(tmp_path: Path, postgres_url: str) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    return Settings(home=home, bus="local", state_url=postgres_url, api_token=SecretStr(TOKEN))


def _spec(dataset: str):
    argv = f"[{sys.executable}, -c, pass]"
    return parse_spec(
        f"datasets: {{{dataset}: {{partitioning: daily}}}}\n"
        f"jobs:\n  after: {{kind: command, inputs: [{dataset}], outputs: [{dataset}.out], "
        f"settings: {{command: {argv}}}}}\n"
    )


def _runs(store: StateStore, job: str = "after") -> list:
    with store.begin() as tx:
        return tx.list_runs(job=job)


def test_a_posted_event_is_recorded_and_run_by_the_engine_before_the_answer_then_published_once(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = _settings(tmp_path, postgres_url)
    dataset = unique("handover.served")
    with StateStore(postgres_url) as store, Coordinator(_spec(dataset), settings, store=store) as coord:
        stop = threading.Event()
        loop = threading.Thread(target=coord.run, kwargs={"stop": stop.is_set}, daemon=True)
        loop.start()
        app = create_app(settings, store=store, handover=lambda: coord.handover)
        with TestClient(app) as client:
            deadline = time.monotonic() + 10
            while not coord.handover.is_open and time.monotonic() < deadline:  # the loop is up
                time.sleep(0.01)
            started = time.monotonic()
            ok = _post(client, dataset)
            assert ok.status_code == 202, ok.text
            assert time.monotonic() - started < HANDOVER_S  # the engine took them, in time
            [event_id] = ok.json()["event_ids"]
            [row] = _published(store, dataset)  # committed before the answer, with the run
            assert row.actor == "api" and row.partition == "2024-01-01" and event_id in (row.detail or "")
            [run] = _runs(store)
            assert run.partition == "2024-01-01" and run.state in ("starting", "running", "succeeded")
            for dataset_, partition, reason in ((dataset, "2024-13-01", "bad_partition"),
                                                ("handover.nowhere", "2024-01-01", "unknown_dataset")):
                refused = _post(client, dataset_, partition)  # the engine's admission (no spec here)
                assert refused.status_code == 422 and refused.json()["detail"]["reason"] == reason
            deadline = time.monotonic() + 20
            while _runs(store)[0].state != "succeeded" and time.monotonic() < deadline:
                time.sleep(0.05)
            on_bus = read_events(settings, 2)  # the outbox published it once (not the refused ones)
            assert sorted(e.dataset for e in on_bus) == [dataset, f"{dataset}.out"]  # and the output
            assert [e.event_id for e in on_bus if e.dataset == dataset] == [event_id]
            time.sleep(0.3)  # it came back off the bus meanwhile: skipped as the engine's own
            assert [r.state for r in _runs(store)] == ["succeeded"]  # no second run
            with store.begin() as tx:
                assert tx.outbox_count() == 0
            stop.set()
            loop.join(30)
            assert not loop.is_alive()
            started = time.monotonic()
            late = _post(client, dataset, "2024-01-02")  # the loop has returned: the request does it all
            assert late.status_code == 202 and time.monotonic() - started < HANDOVER_S
            assert len(_published(store, dataset)) == 2 and not coord.handover
            posted = [e.partition for e in read_events(settings, 3) if e.dataset == dataset]
            assert posted == ["2024-01-01", "2024-01-02"]  # (the third: the run's output event)
            assert len(_runs(store)) == 1  # published, not recorded: no engine consumes it here


def test_without_an_engine_or_when_its_transaction_fails_the_request_publishes_itself(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = _settings(tmp_path, postgres_url)
    alone, failed = unique("handover.alone"), unique("handover.failed")
    with StateStore(postgres_url) as store:
        with TestClient(create_app(settings, store=store)) as client:  # no engine in the process
            assert _post(client, alone).status_code == 202
            assert len(_published(store, alone)) == 1
        handover = Handover()
        handover.open()
        taken: list = []

        def failing_engine() -> None:  # takes what is handed, and its transaction fails
            deadline = time.monotonic() + 10
            while not taken and time.monotonic() < deadline:
                taken.extend(handover.take())
                time.sleep(0.005)
            settle(taken, RuntimeError("the transaction failed"))

        engine = threading.Thread(target=failing_engine, daemon=True)
        engine.start()
        with TestClient(create_app(settings, store=store, handover=lambda: handover)) as client:
            assert _post(client, failed).status_code == 202
        engine.join(10)
        assert len(taken) == 1 and len(_published(store, failed)) == 1  # written once, by the request
    assert sorted(e.dataset for e in read_events(settings, 2)) == sorted([alone, failed])


def test_a_request_not_taken_in_time_withdraws_and_publishes_itself(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = _settings(tmp_path, postgres_url)
    slow = unique("handover.slow")
    handover = Handover()
    handover.open()  # open, but no loop takes anything
    with StateStore(postgres_url) as store:
        with TestClient(create_app(settings, store=store, handover=lambda: handover)) as client:
            started = time.monotonic()
            assert _post(client, slow).status_code == 202
            assert time.monotonic() - started >= HANDOVER_S * 0.9
        assert not handover and len(_published(store, slow)) == 1
    assert [e.dataset for e in read_events(settings, 1)] == [slow]


def test_a_publish_the_bus_refused_is_not_audited(tmp_path: Path, postgres_url: str) -> None:
    settings = _settings(tmp_path, postgres_url)
    refused = unique("handover.refused")
    (settings.home / "bus.db").write_bytes(b"not a database" * 100)  # the bus cannot take anything
    handover = Handover()  # closed: no loop runs
    with StateStore(postgres_url) as store:
        client = TestClient(create_app(settings, store=store, handover=lambda: handover))  # no lifespan:
        bad = _post(client, refused)  # its publisher's close would fail on the same file
        assert bad.status_code == 503 and bad.json()["detail"]["reason"] == "bus_unavailable", bad.text
        assert _published(store, refused) == [] and not handover


def test_a_closed_handover_gives_back_what_waits() -> None:
    handover = Handover()
    assert handover.put([], []) is None  # not open: nobody would take it
    handover.open()
    waiting = handover.put([], [])
    assert isinstance(waiting, Future) and handover
    handover.close("stopping")
    assert not handover and isinstance(waiting.exception(), RuntimeError)
    assert handover.put([], []) is None
