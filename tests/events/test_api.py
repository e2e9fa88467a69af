"""The HTTP side against the real app (FastAPI's TestClient): POST /events behind a bearer token,
each refusal with its status and reason (Fivetran's webhook: test_fivetran.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from coordinator.api import create_app
from coordinator.bus.factory import open_bus
from coordinator.publish import Publisher
from coordinator.settings import Settings
from tests.events.conftest import read_events

TOKEN, SECRET = "s3cret-token", "webhook-secret"


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[TestClient, Settings]]:
    configured = Settings(home=settings.home, bus="local", api_token=TOKEN, webhook_secret=SECRET,
                          max_event_bytes=5000)
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
