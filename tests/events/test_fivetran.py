"""Fivetran's webhook over real HTTP (the FastAPI app served by uvicorn on a free port): signed
sync_end payloads shaped as Fivetran sends them become events in the partition of each
connector's rule; deliveries with nothing to publish get a 2xx and a metric, never a 4xx; bad
rules are refused at start, naming the connector and the field."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import ValidationError

from coordinator.api import create_app
from coordinator.bus.factory import open_bus
from coordinator.engine import Coordinator
from coordinator.errors import SettingsError
from coordinator.events import Status
from coordinator.fivetran import ConnectorRule, FivetranPayload, completion_events
from coordinator.metrics import Metrics
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from tests.events.conftest import read_events

SECRET = "webhook-secret"
CONNECTORS = {
    # the data a sync delivers belongs to the day before its end (the default offset)
    "app_db": {"datasets": ["fivetran.app.users", "fivetran.app.orders"], "partition": "daily"},
    "clicks": {"datasets": ["fivetran.web.clicks"], "partition": "hourly", "timezone": "Europe/Paris"},
    "same_day": {"datasets": ["fivetran.crm.accounts"], "partition": "daily", "offset": "0d",
                 "from": "data.sync_end_time"},
    "countries": ["fivetran.ref.countries"],  # the bare list: unpartitioned
}
SPEC = """
datasets:
  fivetran.app.users: {partitioning: daily}
  fivetran.app.orders: {partitioning: daily}
  fivetran.web.clicks: {partitioning: hourly}
  fivetran.crm.accounts: {partitioning: daily}
  fivetran.ref.countries: {}
jobs:
  features:
    kind: command
    inputs: [fivetran.app.users, fivetran.app.orders]
    outputs: [features.daily]
    settings: {command: [sh, -c, 'echo {partition} >> LOG']}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """The real app behind uvicorn in a thread; `post` signs like Fivetran does."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.publisher = Publisher(open_bus(settings), settings)
        port = _free_port()
        spec = parse_spec(SPEC.replace("LOG", str(settings.home / "ran.log")))
        app = create_app(settings, self.publisher, metrics=metrics, spec=spec, store=None)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20)

    def post(self, payload: Any, *, secret: str = SECRET, raw: bytes | None = None,
             signature: str | None = None) -> httpx.Response:
        body = raw if raw is not None else json.dumps(payload).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "User-Agent": "Fivetran"}
        headers["X-Fivetran-Signature-256"] = digest.upper() if signature is None else signature
        return self.client.post("/webhooks/fivetran", content=body, headers=headers)

    def ignored(self, reason: str) -> float:
        text = self.client.get("/metrics").text
        line = f'coord_webhooks_ignored_total{{reason="{reason}",source="fivetran"}}'
        return next((float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)), 0.0)

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(20)
        self.publisher.close()


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    configured = Settings(home=settings.home, bus="local", webhook_secret=SECRET, max_event_bytes=5000,
                          fivetran_connectors=CONNECTORS, anonymous_reads=True)  # /metrics on loopback
    configured.home.mkdir(parents=True, exist_ok=True)
    app = Served(configured, Metrics())
    yield app
    app.close()


def sync_end(status: str = "SUCCESSFUL", connector: str = "app_db", created: str = "2024-06-02T03:04:05.123Z",
             **data: Any) -> dict[str, Any]:
    """A sync_end as Fivetran sends it (its documented fields; `data.status` SUCCESSFUL or FAILURE...)."""
    return {"event": "sync_end", "created": created, "connector_type": "postgres", "connector_id": connector,
            "connector_name": "app_prod", "sync_id": "f1c6c3b4-sync-77",
            "destination_group_id": "warehouse_eu", "data": {"status": status, **data}}


def test_sync_end_becomes_events_for_the_day_before_its_end(served: Served) -> None:
    response = served.post(sync_end())
    assert response.status_code == 202, response.text
    assert response.json()["partition"] == "2024-06-01"
    events = read_events(served.settings, 2)
    assert sorted((e.dataset, e.partition) for e in events) == [("fivetran.app.orders", "2024-06-01"),
                                                                ("fivetran.app.users", "2024-06-01")]
    assert {(e.status, e.producer, e.producer_run_id) for e in events} == {
        (Status.SUCCEEDED, "fivetran", "f1c6c3b4-sync-77")}
    assert events[0].attributes == {"connector_id": "app_db", "connector_name": "app_prod",
                                    "connector_type": "postgres", "destination_group_id": "warehouse_eu",
                                    "fivetran_status": "SUCCESSFUL"}
    assert sorted(response.json()["event_ids"]) == sorted(e.event_id for e in events)
    # Fivetran retries deliveries: the same sync gives the same event ids (a no-op downstream).
    assert served.post(sync_end()).json() == response.json()


def test_a_failed_sync_gives_failed_events_with_fivetran_reason(served: Served) -> None:
    response = served.post(sync_end("FAILURE_WITH_TASK", reason="Access denied for user 'fivetran'"))
    assert response.status_code == 202, response.text
    events = read_events(served.settings, 2)
    assert {(e.status, e.partition) for e in events} == {(Status.FAILED, "2024-06-01")}
    assert events[0].error == "Access denied for user 'fivetran'"
    served.post(sync_end("FAILURE", connector="countries"))
    [failed] = [e for e in read_events(served.settings, 3) if e.dataset == "fivetran.ref.countries"]
    assert failed.partition is None and "FAILURE" in failed.error


@pytest.mark.parametrize(("connector", "created", "data", "partition"), [
    ("app_db", "2024-06-02T00:00:00Z", {}, "2024-06-01"),  # midnight: still the day before
    ("app_db", "2024-06-01T23:59:59.999+00:00", {}, "2024-05-31"),
    ("app_db", "2024-03-01T05:00:00+05:00", {}, "2024-02-29"),  # offsets are read, then UTC's calendar
    # hourly in Paris: 01:30 UTC on the day clocks move is 03:30 CEST; an hour earlier is 01:30 CET
    ("clicks", "2024-03-31T01:30:00Z", {}, "2024-03-31T01"),
    ("clicks", "2024-06-01T22:10:00Z", {}, "2024-06-01T23"),
    ("same_day", "2024-06-09T10:00:00Z", {"sync_end_time": "2024-06-08T23:30:00Z"}, "2024-06-08"),
    ("countries", "2024-06-02T03:04:05Z", {}, None),
])
def test_each_rule_computes_its_partition(served: Served, connector, created, data, partition) -> None:
    response = served.post(sync_end(connector=connector, created=created, **data))
    assert response.status_code == 202, response.text
    assert response.json()["partition"] == partition
    assert {e.partition for e in read_events(served.settings, 1)} == {partition}


@pytest.mark.parametrize(("payload", "reason"), [
    (sync_end(connector="not_mapped"), "unknown_connector"),
    ({"event": "sync_start", "created": "2024-06-02T03:00:00Z", "connector_id": "app_db", "data": {}},
     "not_a_completion"),
    # the ping Fivetran sends when the webhook is created (no sync_id, "created" is a word)
    ({"event": "test_event", "created": "timestamp", "connector_type": "_connector_type",
      "connector_id": "_connector_1", "group_id": "_destination_1"}, "not_a_completion"),
    (sync_end("RESCHEDULED"), "not_a_completion"),
    ({**sync_end(), "data": None}, "not_a_completion"),
])
def test_deliveries_with_nothing_to_publish_get_a_2xx_and_a_metric(served: Served, payload, reason) -> None:
    before = served.ignored(reason)
    response = served.post(payload)
    assert response.status_code == 202, response.text
    assert response.json()["event_ids"] == [] and response.json()["ignored"] == reason
    assert served.ignored(reason) == before + 1
    assert read_events(served.settings, 0) == []


@pytest.mark.parametrize("tamper", ["missing", "wrong_secret", "changed_body", "not_hex"])
def test_badly_signed_deliveries_are_refused(served: Served, tamper: str) -> None:
    body = json.dumps(sync_end()).encode()
    if tamper == "missing":
        response = served.client.post("/webhooks/fivetran", content=body)
    elif tamper == "wrong_secret":
        response = served.post(sync_end(), secret="other")
    elif tamper == "changed_body":
        good = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        response = served.post(None, raw=body.replace(b"app_db", b"app_dc"), signature=good)
    else:
        response = served.post(None, raw=body, signature="sha256=zz")
    assert response.status_code == 401 and response.json()["detail"]["reason"] == "bad_signature"
    assert read_events(served.settings, 0) == []


@pytest.mark.parametrize(("raw", "status", "reason", "detail"), [
    (b"{not json", 422, "undecodable", ""),
    (b'["sync_end"]', 422, "undecodable", ""),
    (json.dumps({"event": "sync_end", "data": {"status": "SUCCESSFUL"}}).encode(), 422, "undecodable",
     "connector_id"),
    # a mapped connector whose rule cannot place the payload: 4xx, so Fivetran's retries deliver it
    # once the mapping is fixed
    (json.dumps(sync_end(created="timestamp")).encode(), 422, "bad_partition",
     "app_db: payload field 'created'"),
    (json.dumps({k: v for k, v in sync_end().items() if k != "created"}).encode(), 422, "bad_partition",
     "'created' is None"),
    (json.dumps(sync_end(connector="same_day")).encode(), 422, "bad_partition", "'data.sync_end_time'"),
    (json.dumps(sync_end(reason="x" * 6000)).encode(), 413, "oversized", ""),
])
def test_undecodable_or_unplaceable_payloads_are_refused_with_a_reason(served: Served, raw, status, reason,
                                                                       detail) -> None:
    response = served.post(None, raw=raw)
    assert response.status_code == status, response.text
    assert response.json()["detail"]["reason"] == reason and detail in response.json()["detail"]["detail"]
    assert read_events(served.settings, 0) == []


def test_a_sync_end_drives_a_daily_pipeline(served: Served) -> None:
    assert served.post(sync_end()).status_code == 202
    spec = parse_spec(SPEC.replace("LOG", str(served.settings.home / "ran.log")))
    with Coordinator(spec, served.settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=60)
    assert (stats.succeeded, stats.failed) == (1, 0)
    assert (served.settings.home / "ran.log").read_text().split() == ["2024-06-01"]


@pytest.mark.parametrize(("rule", "field", "says"), [
    ({"datasets": ["a"], "partition": "weekly"}, "app_db.partition", "'daily', 'hourly' or 'none'"),
    ({"datasets": ["a"]}, "app_db.partition", "Field required"),
    ({"datasets": [], "partition": "daily"}, "app_db.datasets", "at least 1"),
    ({"datasets": [""], "partition": "none"}, "app_db.datasets", "empty"),
    ({"datasets": ["a"], "partition": "daily", "offset": "-1 day"}, "app_db.offset", "not an offset"),
    ({"datasets": ["a"], "partition": "daily", "offset": "-3h"}, "app_db", "whole days"),
    ({"datasets": ["a"], "partition": "daily", "timezone": "Mars/Olympus"}, "app_db.timezone", "IANA"),
    ({"datasets": ["a"], "partition": "daily", "from": "data..end"}, "app_db.from", "not a payload field"),
    ({"datasets": ["a"], "partition": "none", "offset": "-1d"}, "app_db", "offset: no meaning"),
    ({"datasets": ["a"], "partition": "daily", "ofset": "-1d"}, "app_db.ofset", "Extra inputs"),
    ("fivetran.app.users", "app_db", "valid dictionary"),
])
def test_a_bad_rule_is_an_error_at_start_naming_connector_and_field(
        monkeypatch: pytest.MonkeyPatch, rule, field: str, says: str) -> None:
    monkeypatch.setenv("COORD_FIVETRAN_CONNECTORS", json.dumps({"app_db": rule}))
    with pytest.raises((ValidationError, SettingsError)) as raised:
        Settings()
    message = str(raised.value)  # the settings' own wording around it may change; these stay
    assert "app_db" in message and field.rsplit(".", 1)[-1] in message and says in message


@pytest.mark.parametrize(("rule", "says"), [
    ({"datasets": ["fivetran.app.userz"], "partition": "daily"},
     "COORD_FIVETRAN_CONNECTORS: app_db.datasets: 'fivetran.app.userz' is not in the spec"),
    ({"datasets": ["fivetran.app.users"], "partition": "hourly"},
     "COORD_FIVETRAN_CONNECTORS: app_db.partition: hourly does not fit 'fivetran.app.users', which the "
     "spec partitions daily"),
    (["fivetran.app.users"], "partition: none does not fit"),
])
def test_a_rule_that_cannot_feed_the_spec_stops_the_start(settings: Settings, rule, says: str) -> None:
    configured = Settings(home=settings.home, bus="local", webhook_secret=SECRET,
                          fivetran_connectors={"app_db": rule})
    with Publisher(open_bus(configured), configured) as publisher, pytest.raises(SettingsError) as raised:
        create_app(configured, publisher, spec=parse_spec(SPEC))
    assert says in str(raised.value)


def test_the_readme_example_mapping_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("COORD_FIVETRAN_CONNECTORS='", 1)[1].split("'", 1)[0]
    assert Settings(home=tmp_path, fivetran_connectors=json.loads(example)).fivetran_connectors


def test_a_long_sync_id_still_gives_stable_event_ids(served: Served) -> None:
    payload = sync_end() | {"sync_id": "s" * 300}
    first, retry = served.post(payload), served.post(payload)
    assert first.status_code == 202, first.text
    assert first.json() == retry.json()
    assert all(len(i) <= 200 and i.startswith("fivetran:") for i in first.json()["event_ids"])
    assert {e.event_id for e in read_events(served.settings, 4)} == set(first.json()["event_ids"])


def test_a_reason_longer_than_an_event_holds_is_cut() -> None:
    payload = sync_end("FAILURE_WITH_TASK", reason="x" * 30000)
    rule = ConnectorRule.model_validate(CONNECTORS["app_db"])
    events = completion_events(FivetranPayload.model_validate(payload), rule, payload)
    assert [len(e.error) for e in events] == [20000, 20000]


def test_coord_serve_refuses_a_mapping_that_does_not_fit_in_one_line_each(tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(SPEC.replace("LOG", str(tmp_path / "ran.log")))
    mapping = {"app_db": {"datasets": ["fivetran.app.userz"], "partition": "daily"},
               "clicks": {"datasets": ["fivetran.web.clicks"], "partition": "daily"}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
    env |= {"COORD_HOME": str(tmp_path / "home"), "COORD_API_PORT": str(_free_port()),
            "COORD_WEBHOOK_SECRET": SECRET, "COORD_FIVETRAN_CONNECTORS": json.dumps(mapping)}
    done = subprocess.run([str(Path(sys.executable).parent / "coord"), "serve", str(spec)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "settings: COORD_FIVETRAN_CONNECTORS: app_db.datasets: 'fivetran.app.userz' is not in the spec",
        "settings: COORD_FIVETRAN_CONNECTORS: clicks.partition: daily does not fit 'fivetran.web.clicks', "
        "which the spec partitions hourly"]


def test_a_payload_without_sync_id_or_time_gives_the_same_ids_when_retried(served: Served) -> None:
    payload = {"event": "sync_end", "connector_id": "countries", "data": {"status": "SUCCESSFUL"}}
    first, retry = served.post(payload), served.post(payload)
    assert first.status_code == 202 and first.json() == retry.json()
    other = served.post(payload | {"connector_name": "ref"})
    assert other.json()["event_ids"] != first.json()["event_ids"]
