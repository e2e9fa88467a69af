"""The HTTP side against the real app (FastAPI's TestClient): POST /events behind a bearer token
and Fivetran's signed webhook, each refusal with its status and reason."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from coordinator.api import create_app
from coordinator.bus.factory import open_bus
from coordinator.events import Status
from coordinator.publish import Publisher
from coordinator.settings import Settings
from tests.events.conftest import read_events

TOKEN, SECRET = "s3cret-token", "webhook-secret"


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[TestClient, Settings]]:
    configured = Settings(home=settings.home, bus="local", api_token=TOKEN, webhook_secret=SECRET,
                          max_event_bytes=5000,
                          fivetran_connectors={"app_db": ["fivetran.app.users", "fivetran.app.orders"]})
    with Publisher(open_bus(configured), configured) as publisher, \
            TestClient(create_app(configured, publisher)) as client:
        yield client, configured


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_post_event_publishes_it(api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    body = {"dataset": "crm.accounts", "partition": "2024-06-01", "row_count": 10, "producer": "crm",
            "columns": [{"name": "id", "type": "bigint", "nullable": False}], "attributes": {"k": "v"}}
    response = client.post("/events", json=body, headers=_auth())
    assert response.status_code == 202, response.text
    [event] = read_events(settings, 1)
    assert response.json() == {"event_ids": [event.event_id]}
    assert (event.dataset, event.partition, event.row_count, event.producer) == ("crm.accounts", "2024-06-01",
                                                                                  10, "crm")
    assert event.columns[0].nullable is False and event.attributes == {"k": "v"}


@pytest.mark.parametrize(("headers", "status", "reason"), [
    ({}, 401, "unauthenticated"),
    ({"Authorization": "Bearer wrong"}, 401, "unauthenticated"),
    ({"Authorization": f"Basic {TOKEN}"}, 401, "unauthenticated"),
])
def test_post_event_needs_the_token(api, headers, status, reason) -> None:
    client, settings = api
    response = client.post("/events", json={"dataset": "x"}, headers=headers)
    assert response.status_code == status and response.json()["detail"]["reason"] == reason
    assert read_events(settings, 0) == []


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "undecodable"),
    (json.dumps({"partition": "p"}).encode(), "missing_field"),
    (json.dumps({"dataset": "x", "row_count": "many"}).encode(), "wrong_type"),
    (json.dumps({"dataset": "x", "status": "maybe"}).encode(), "wrong_type"),
    (json.dumps({"dataset": "", "row_count": 1}).encode(), "invalid"),
    (json.dumps({"dataset": "x", "surprise": 1}).encode(), "invalid"),
    (json.dumps(["dataset"]).encode(), "wrong_type"),
])
def test_post_event_refuses_bad_events_with_a_reason(api, body: bytes, reason: str) -> None:
    client, settings = api
    response = client.post("/events", content=body, headers=_auth() | {"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"]["reason"] == reason, response.text
    assert read_events(settings, 0) == []


def test_post_event_refuses_oversized_bodies(api) -> None:
    client, _ = api
    response = client.post("/events", json={"dataset": "x", "location": "y" * 6000}, headers=_auth())
    assert response.status_code == 413 and response.json()["detail"]["reason"] == "oversized"


def test_endpoints_are_closed_when_not_configured(settings: Settings) -> None:
    with Publisher(open_bus(settings), settings) as publisher, \
            TestClient(create_app(settings, publisher)) as c:
        assert c.post("/events", json={"dataset": "x"}, headers=_auth()).status_code == 503
        assert c.post("/webhooks/fivetran", content=b"{}").status_code == 503


def _signed(payload: dict, secret: str = SECRET, upper: bool = False) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Fivetran-Signature-256": digest.upper() if upper else digest,
                  "Content-Type": "application/json"}


def _sync_end(status: str, connector: str = "app_db") -> dict:
    return {"event": "sync_end", "created": "2024-06-01T03:04:05.123Z", "connector_type": "postgres",
            "connector_id": connector, "connector_name": "app", "sync_id": "sync-77",
            "destination_group_id": "warehouse", "data": {"status": status}}


def test_fivetran_sync_end_becomes_events_for_the_connector_datasets(api) -> None:
    client, settings = api
    body, headers = _signed(_sync_end("SUCCESSFUL"), upper=True)
    response = client.post("/webhooks/fivetran", content=body, headers=headers)
    assert response.status_code == 202, response.text
    events = read_events(settings, 2)
    assert sorted(e.dataset for e in events) == ["fivetran.app.orders", "fivetran.app.users"]
    assert all(e.status is Status.SUCCEEDED and e.producer == "fivetran" and e.producer_run_id == "sync-77"
               for e in events)
    assert events[0].attributes["connector_id"] == "app_db"
    # Fivetran retries deliveries: the same sync gives the same event ids.
    again = client.post("/webhooks/fivetran", content=body, headers=headers)
    assert again.json() == response.json()


def test_fivetran_failed_sync_gives_failed_events(api) -> None:
    client, settings = api
    body, headers = _signed(_sync_end("FAILURE_WITH_TASK"))
    assert client.post("/webhooks/fivetran", content=body, headers=headers).status_code == 202
    events = read_events(settings, 2)
    assert {e.status for e in events} == {Status.FAILED} and "FAILURE_WITH_TASK" in events[0].error


@pytest.mark.parametrize("tamper", ["missing", "wrong_secret", "changed_body"])
def test_fivetran_badly_signed_webhooks_are_refused(api, tamper: str) -> None:
    client, settings = api
    body, headers = _signed(_sync_end("SUCCESSFUL"), secret="other" if tamper == "wrong_secret" else SECRET)
    if tamper == "missing":
        del headers["X-Fivetran-Signature-256"]
    if tamper == "changed_body":
        body = body.replace(b"app_db", b"app_dc")
    response = client.post("/webhooks/fivetran", content=body, headers=headers)
    assert response.status_code == 401 and response.json()["detail"]["reason"] == "bad_signature"
    assert read_events(settings, 0) == []


def test_fivetran_other_events_and_unknown_connectors(api) -> None:
    client, settings = api
    body, headers = _signed({"event": "sync_start", "connector_id": "app_db", "data": {}})
    assert client.post("/webhooks/fivetran", content=body, headers=headers).json()["event_ids"] == []
    body, headers = _signed({"event": "test_event", "connector_id": "_connector_1", "created": "timestamp"})
    test_ping = client.post("/webhooks/fivetran", content=body, headers=headers)  # sent on webhook creation
    assert test_ping.status_code == 202 and test_ping.json()["event_ids"] == []
    body, headers = _signed(_sync_end("SUCCESSFUL", connector="unknown"))
    response = client.post("/webhooks/fivetran", content=body, headers=headers)
    assert response.status_code == 404 and response.json()["detail"]["reason"] == "unknown_connector"
    assert read_events(settings, 0) == []
