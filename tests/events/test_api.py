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


# ------------------------------------------------------------------ admission against the spec
def test_post_event_is_admitted_against_the_spec(settings: Settings) -> None:
    from tests.bus.poison import spec

    configured = Settings(home=settings.home, bus="local", api_token=TOKEN)
    cases = [
        ({"dataset": "nobody.declares.this", "partition": "2025-01-01"}, "unknown_dataset"),
        ({"dataset": "raw.orders", "partition": "2025-13-45"}, "bad_partition"),
        ({"dataset": "raw.orders", "partition": "yesterday"}, "bad_partition"),
        ({"dataset": "raw.orders"}, "bad_partition"),
        ({"dataset": "raw.orders", "partition": "2025-01-01T05"}, "bad_partition"),
        ({"dataset": "raw.clicks", "partition": "2025-01-01"}, "bad_partition"),
        ({"dataset": "raw.regions", "partition": "fr"}, "bad_partition"),
        ({"dataset": "raw.fx", "partition": "2025-01-01"}, "bad_partition"),
    ]
    with Publisher(open_bus(configured), configured) as publisher, \
            TestClient(create_app(configured, publisher, spec=spec())) as client:
        for body, reason in cases:
            response = client.post("/events", json=body, headers=_auth())
            assert response.status_code == 422, (body, response.text)
            assert response.json()["detail"]["reason"] == reason, body
            assert body["dataset"] in response.json()["detail"]["detail"]
        good_body = {"dataset": "raw.orders", "partition": "2025-01-02"}
        good = client.post("/events", json=good_body, headers=_auth())
        assert good.status_code == 202, good.text
    [event] = read_events(configured, 1)  # only the good one reached the bus
    assert (event.dataset, event.partition) == ("raw.orders", "2025-01-02")


# ------------------------------------------------------------------ health and readiness
def test_healthz_and_readyz_with_a_store(settings: Settings, tmp_path) -> None:
    from coordinator.store.store import StateStore

    configured = Settings(home=settings.home, bus="local")
    with Publisher(open_bus(configured), configured) as publisher, \
            StateStore(f"sqlite:///{tmp_path / 'state.db'}") as store, \
            TestClient(create_app(configured, publisher, store=store, bus_ready=lambda: True)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "bus": "assigned", "store": "reachable"}


def test_readyz_is_503_while_the_store_does_not_answer(settings: Settings) -> None:
    from coordinator.store.store import StateStore
    from tests.bus.broker import free_port

    configured = Settings(home=settings.home, bus="local")
    dead = StateStore(f"postgresql+psycopg://coord:coord@127.0.0.1:{free_port()}/nothing?connect_timeout=2")
    with Publisher(open_bus(configured), configured) as publisher, \
            TestClient(create_app(configured, publisher, store=dead, bus_ready=lambda: True)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False and ready.json()["store"].startswith("error: ")


@pytest.mark.kafka
def test_readyz_waits_for_the_consumers_assignment_on_kafka(kafka_bootstrap: str, tmp_path) -> None:
    from coordinator.bus.base import TopicSpec
    from coordinator.intake import EventIntake
    from tests.conftest import unique

    configured = Settings(home=tmp_path / "home", bus="kafka", kafka_bootstrap_servers=kafka_bootstrap,
                          topic_events=unique("ev").replace("_", "-"), consumer_group=unique("g"),
                          instance_name=unique("i"))
    bus = open_bus(configured)
    bus.ensure_topics([TopicSpec(configured.topic_events, 2)])
    with Publisher(bus, configured) as publisher, EventIntake(bus, configured) as intake, \
            TestClient(create_app(configured, publisher, bus_ready=intake.assigned)) as client:
        before = client.get("/readyz")
        assert before.status_code == 503 and before.json()["bus"] == "not assigned yet"
        for _ in range(60):
            intake.poll(10, 0.5)
            if intake.assigned():
                break
        after = client.get("/readyz")
        assert after.status_code == 200, after.text
        assert after.json() == {"ready": True, "bus": "assigned", "store": "not checked"}


@pytest.mark.kafka
def test_readyz_is_ready_while_the_events_topic_does_not_exist_yet(kafka_bootstrap: str, tmp_path) -> None:
    """Nothing was published yet, so nothing is assigned and nothing waits: ready, or a probe
    would keep the instance out of service until someone publishes through it."""
    from coordinator.intake import EventIntake
    from tests.conftest import unique

    configured = Settings(home=tmp_path / "home", bus="kafka", kafka_bootstrap_servers=kafka_bootstrap,
                          topic_events=unique("never").replace("_", "-"), consumer_group=unique("g"),
                          instance_name=unique("i"))
    bus = open_bus(configured)
    with Publisher(bus, configured) as publisher, EventIntake(bus, configured) as intake, \
            TestClient(create_app(configured, publisher, bus_ready=intake.assigned)) as client:
        assert client.get("/readyz").status_code == 503  # not even polled yet
        intake.poll(10, 1.0)
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
