"""Reads without a token only when the setting allows it AND the server binds a loopback address.
By the settings' logic alone (the bound address is what create_app is told): no traffic leaves
loopback."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from coordinator.api.app import create_app
from coordinator.auth import Authenticator
from coordinator.settings import Settings
from coordinator.store import StateStore
from tests.security.conftest import SPEC


def _get(settings: Settings, bound_host: str | None = None, path: str = "/api/runs"):
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=SPEC, store=store, bound_host=bound_host)) as c:
        return c.get(path), c.post("/api/runs/x/retry")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_anonymous_reads_on_loopback_when_allowed(home, host) -> None:
    read, action = _get(Settings(home=home, bus="local", anonymous_reads=True, api_host=host,
                                 api_token="t-admin-1"))
    assert read.status_code == 200
    assert action.status_code == 401  # anonymous is read only


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "10.0.0.5", "::", "coord.example.com"])
def test_a_server_bound_off_loopback_refuses_anonymous_reads(home, host) -> None:
    read, _ = _get(Settings(home=home, bus="local", anonymous_reads=True, api_host=host))
    assert read.status_code == 401
    says = read.json()["detail"]["detail"]
    assert f"anonymous reads are allowed on loopback only; this server binds {host}" in says


def test_the_address_served_wins_over_the_setting(home) -> None:
    """`coord serve --host 0.0.0.0` with COORD_API_HOST at its loopback default: no anonymous reads."""
    settings = Settings(home=home, bus="local", anonymous_reads=True)
    assert _get(settings, bound_host="0.0.0.0")[0].status_code == 401
    assert _get(settings, bound_host="127.0.0.1")[0].status_code == 200


def test_without_the_setting_reads_need_a_token_even_on_loopback(home, tokens) -> None:
    settings = Settings(home=home, bus="local", tokens=tokens.entries)
    read, _ = _get(settings)
    assert read.status_code == 401 and "COORD_ANONYMOUS_READS" in read.json()["detail"]["detail"]
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=SPEC, store=store)) as c:
        assert c.get("/api/runs", headers=tokens.header("read")).status_code == 200
        assert c.get("/metrics").status_code == 401  # checked before the route finds no metrics


def test_the_demo_reads_anonymously_by_default(tmp_path) -> None:
    from coordinator.demo.settings import DemoOptions, demo_settings

    settings = demo_settings(DemoOptions(home=tmp_path / "demo"))
    assert settings.anonymous_reads and Authenticator.from_settings(settings).anonymous_reads
    assert not Settings(home=tmp_path).anonymous_reads
