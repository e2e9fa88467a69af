"""The composition root: one Service builds the store, bus, observers, HTTP side and engine, and
closes them all — on the embedded bus and SQLite store, with a real HTTP server on a free port."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from coordinator.errors import SettingsError
from coordinator.events import CompletionEvent
from coordinator.service import Service
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from tests.observe.journey import publish
from tests.observe.server import free_port

SPEC = """\
datasets: {raw.a: {partitioning: daily}}
jobs:
  load: {kind: command, inputs: [raw.a], outputs: [mid], settings: {command: "true"}}
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    return Settings(home=home, bus="local", anonymous_reads=True)


def test_one_service_runs_the_engine_with_its_http_side_and_closes_it(settings: Settings) -> None:
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    port = free_port()
    with Service(parse_spec(SPEC), settings, http=("127.0.0.1", port)) as service:
        assert service.metrics is not None  # observing comes with the HTTP side
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
        stats = service.run(until_idle=True, timeout_s=60)
        assert (stats.runs_created, stats.succeeded, stats.published) == (1, 1, 1)
        assert service.coordinator.freeze_gc is False  # opt-in: only `run` and `serve` ask for it
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'coord_runs_finished_total{job="load",state="succeeded"} 1.0' in metrics
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    with Service(parse_spec(SPEC), settings, freeze_gc=True) as service:
        assert service.coordinator.freeze_gc is True
        assert service.run(until_idle=True, timeout_s=30).runs_created == 0  # the event was taken once


def test_a_port_that_cannot_be_bound_is_a_clear_error(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = pytest.raises(SettingsError, match=rf"cannot serve HTTP on 127.0.0.1:{port}")
        with refused, Service(parse_spec(SPEC), settings, http=("127.0.0.1", port)):
            pass
