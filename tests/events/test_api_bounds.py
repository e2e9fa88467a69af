"""POST /events and /webhooks/fivetran at their bounds: a body that gives an event over
max_event_bytes once encoded, bodies too big to read (refused before they are, or as soon as a
chunked one passes the limit), JSON nested too deeply, a signature header that is not ASCII, a
time no partition key can name. Each is a 4xx with its reason, never a 500."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from coordinator.api import create_app
from coordinator.bus.factory import open_bus
from coordinator.codec import Codec, event_from_json
from coordinator.publish import Publisher
from coordinator.settings import Settings
from tests.events.conftest import read_events
from tests.events.test_fivetran import CONNECTORS, sync_end

TOKEN, SECRET, LIMIT = "s3cret-token", "webhook-secret", 5000
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _settings(settings: Settings, limit: int = LIMIT) -> Settings:
    return Settings(
        home=settings.home,
        bus="local",
        api_token=TOKEN,
        webhook_secret=SECRET,
        max_event_bytes=limit,
        fivetran_connectors=CONNECTORS,
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[tuple[FastAPI, Settings]]:
    configured = _settings(settings)
    with Publisher(open_bus(configured), configured) as publisher:
        yield create_app(configured, publisher), configured


def _signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Fivetran-Signature-256": digest, "Content-Type": "application/json"}


def _reason(response) -> str:
    return response.json()["detail"]["reason"]


# ------------------------------------------------------------------ the encoded event's size
def test_a_body_under_the_limit_whose_encoded_event_is_over_it_is_refused(app) -> None:
    fastapi_app, settings = app
    empty = json.dumps({"dataset": "x", "error": ""})
    body = json.dumps({"dataset": "x", "error": "e" * (LIMIT - len(empty))}).encode()
    assert len(body) == LIMIT  # the body passes; the event, with its generated id and time, does not
    event = event_from_json(body)
    assert len(Codec(max_bytes=10 * LIMIT).encode(event)) > LIMIT
    with TestClient(fastapi_app) as client:
        response = client.post("/events", content=body, headers=AUTH | {"Content-Type": "application/json"})
    assert response.status_code == 413 and _reason(response) == "oversized", response.text
    assert read_events(settings, 0) == []


def test_a_webhook_whose_events_encode_over_the_limit_is_refused(app) -> None:
    fastapi_app, settings = app
    # the status is in the event twice (its error and an attribute): more than the body
    body = json.dumps(sync_end(status="FAIL" + "x" * 2600)).encode()
    assert len(body) < LIMIT
    with TestClient(fastapi_app) as client:
        response = client.post("/webhooks/fivetran", content=body, headers=_signed(body))
    assert response.status_code == 413 and _reason(response) == "oversized", response.text
    assert read_events(settings, 0) == []


# ------------------------------------------------------------------ bodies too big to read
class _Body:
    """An ASGI receive giving `chunks` times `chunk` (2 MB: a body far over the limit), counting
    the reads."""

    def __init__(self, chunk: bytes = b"x" * 1000, chunks: int = 2000) -> None:
        self.chunk, self.chunks, self.reads = chunk, chunks, 0

    async def __call__(self) -> dict:
        if self.reads >= self.chunks:
            return {"type": "http.disconnect"}
        self.reads += 1
        return {"type": "http.request", "body": self.chunk, "more_body": self.reads < self.chunks}


def _call(app: FastAPI, path: str, headers: dict[str, str], body: _Body) -> tuple[int, dict]:
    """One request straight through the ASGI app: the body is read only as the app asks."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(app(scope, body, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(content)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/events", AUTH),
        ("/webhooks/fivetran", {"X-Fivetran-Signature-256": "0" * 64}),  # a wrong signature
    ],
)
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(app, path, headers) -> None:
    fastapi_app, _ = app
    body = _Body()
    status, answer = _call(fastapi_app, path, headers | {"Content-Length": str(800_000_000)}, body)
    assert (status, answer["detail"]["reason"]) == (413, "oversized")
    assert body.reads == 0


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/events", AUTH),
        ("/webhooks/fivetran", {"X-Fivetran-Signature-256": "0" * 64}),
    ],
)
def test_a_chunked_body_is_read_only_until_it_passes_the_limit(app, path, headers) -> None:
    fastapi_app, _ = app
    body = _Body()
    status, answer = _call(fastapi_app, path, headers | {"Transfer-Encoding": "chunked"}, body)
    assert (status, answer["detail"]["reason"]) == (413, "oversized")
    assert body.reads == LIMIT // len(body.chunk) + 1  # the chunk that passed it, not one more


# ------------------------------------------------------------------ nesting, headers, times
def test_json_nested_too_deeply_is_undecodable(settings: Settings) -> None:
    configured = _settings(settings, limit=1_000_000)
    deep = b"[" * 100_000
    with (
        Publisher(open_bus(configured), configured) as publisher,
        TestClient(create_app(configured, publisher)) as client,
    ):
        event = client.post("/events", content=deep, headers=AUTH | {"Content-Type": "application/json"})
        webhook = client.post("/webhooks/fivetran", content=deep, headers=_signed(deep))
    assert (event.status_code, _reason(event)) == (422, "undecodable"), event.text
    assert (webhook.status_code, _reason(webhook)) == (422, "undecodable"), webhook.text


def test_a_signature_header_that_is_not_ascii_is_a_bad_signature(app) -> None:
    fastapi_app, _ = app
    body = json.dumps(sync_end()).encode()
    with TestClient(fastapi_app) as client:
        response = client.post(
            "/webhooks/fivetran", content=body, headers={"X-Fivetran-Signature-256": "é".encode() * 32}
        )
    assert (response.status_code, _reason(response)) == (401, "bad_signature"), response.text


@pytest.mark.parametrize("created", ["0001-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00"])
def test_a_time_beyond_the_calendar_is_a_bad_partition(app, created: str) -> None:
    fastapi_app, settings = app
    body = json.dumps(sync_end(created=created)).encode()
    with TestClient(fastapi_app) as client:
        response = client.post("/webhooks/fivetran", content=body, headers=_signed(body))
    assert (response.status_code, _reason(response)) == (422, "bad_partition"), response.text
    assert read_events(settings, 0) == []
