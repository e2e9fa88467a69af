"""POST /events on a PostgreSQL store: the audit row is written while the event travels to the
bus and committed only once the bus has it (api/events.py), so a publish the bus refused leaves
no audit row behind, and one it took leaves exactly one."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from coordinator.api.app import create_app
from coordinator.settings import Settings
from coordinator.store import StateStore
from coordinator.store import audit as A
from tests.conftest import unique

TOKEN = "audit-test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _published(store: StateStore, dataset: str) -> list[A.AuditRow]:
    with store.begin() as tx:
        return [r for r in A.recent(tx) if r.action == "publish" and r.job == dataset]


def test_a_publish_is_audited_once_the_bus_has_it_not_when_refused(tmp_path: Path, postgres_url: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(home=home, bus="local", state_url=postgres_url, api_token=SecretStr(TOKEN))
    taken, refused = unique("audit.taken"), unique("audit.refused")
    with StateStore(postgres_url) as store:
        with TestClient(create_app(settings, store=store)) as client:
            ok = client.post("/events", json={"dataset": taken, "partition": "p1"}, headers=HEADERS)
            assert ok.status_code == 202, ok.text
            rows = _published(store, taken)
            assert len(rows) == 1 and rows[0].actor == "api" and rows[0].partition == "p1"
            assert ok.json()["event_ids"][0] in (rows[0].detail or "")
        # the bus's file is not a database any more: the publish is refused, and not audited
        (home / "bus.db").write_bytes(b"not a database" * 100)
        for suffix in ("-wal", "-shm"):
            (home / f"bus.db{suffix}").unlink(missing_ok=True)
        client = TestClient(create_app(settings, store=store))  # no lifespan: its publisher's close fails too
        bad = client.post("/events", json={"dataset": refused, "partition": "p1"}, headers=HEADERS)
        assert bad.status_code == 503 and bad.json()["detail"]["reason"] == "bus_unavailable", bad.text
        assert _published(store, refused) == []
        assert len(_published(store, taken)) == 1
