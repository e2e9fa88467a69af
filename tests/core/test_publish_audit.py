"""POST /events' audit on a PostgreSQL store (api/events.py, coordinator/audit_queue.py): with an
engine in the process its rows are written in the engine's transaction, committed before the
request answers; with an engine that takes nothing (stopped) the request withdraws them and
writes them itself; without an engine, in a transaction of its own; and a publish the bus
refused is never audited."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from coordinator.api.app import create_app
from coordinator.audit_queue import HANDOVER_S, AuditQueue
from coordinator.engine import Coordinator
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.store import audit as A
from tests.conftest import unique

TOKEN = "audit-test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _published(store: StateStore, dataset: str) -> list[A.AuditRow]:
    with store.begin() as tx:
        return [r for r in A.recent(tx) if r.action == "publish" and r.job == dataset]


def _post(client: TestClient, dataset: str):
    return client.post("/events", json={"dataset": dataset, "partition": "p1"}, headers=HEADERS)


def _settings(tmp_path: Path, postgres_url: str) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    return Settings(home=home, bus="local", state_url=postgres_url, api_token=SecretStr(TOKEN))


def test_the_audit_is_written_in_the_engines_transaction_or_else_by_the_request(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = _settings(tmp_path, postgres_url)
    spec = parse_spec("datasets: {raw.a: {}}\njobs: {}\n")
    served, stopped, alone = unique("audit.served"), unique("audit.stopped"), unique("audit.alone")
    with StateStore(postgres_url) as store, Coordinator(spec, settings, store=store) as coord:
        stop = threading.Event()
        loop = threading.Thread(target=coord.run, kwargs={"stop": stop.is_set}, daemon=True)
        loop.start()
        with TestClient(create_app(settings, store=store, audit_queue=lambda: coord.audits)) as client:
            started = time.monotonic()
            ok = _post(client, served)
            assert ok.status_code == 202, ok.text
            assert time.monotonic() - started < HANDOVER_S  # the engine took the rows, in time
            [row] = _published(store, served)  # committed before the answer
            assert row.actor == "api" and row.partition == "p1"
            assert ok.json()["event_ids"][0] in (row.detail or "")
            stop.set()
            loop.join(30)
            assert not loop.is_alive()
            started = time.monotonic()
            late = _post(client, stopped)  # nobody takes the rows: the request writes them itself
            assert late.status_code == 202 and time.monotonic() - started >= HANDOVER_S * 0.9
            assert len(_published(store, stopped)) == 1 and not coord.audits
        with TestClient(create_app(settings, store=store)) as client:  # no engine in the process
            assert _post(client, alone).status_code == 202
            assert len(_published(store, alone)) == 1
    assert len(_published(store, served)) == 1


def test_a_publish_the_bus_refused_is_not_audited(tmp_path: Path, postgres_url: str) -> None:
    settings = _settings(tmp_path, postgres_url)
    refused = unique("audit.refused")
    (settings.home / "bus.db").write_bytes(b"not a database" * 100)  # the bus cannot take anything
    queue = AuditQueue()
    with StateStore(postgres_url) as store:
        client = TestClient(create_app(settings, store=store, audit_queue=lambda: queue))  # no lifespan:
        bad = _post(client, refused)  # its publisher's close would fail on the same file
        assert bad.status_code == 503 and bad.json()["detail"]["reason"] == "bus_unavailable", bad.text
        assert _published(store, refused) == [] and not queue
