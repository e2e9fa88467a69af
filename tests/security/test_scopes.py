"""Each scope allows what it names and nothing else: every protected endpoint × every scope."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from coordinator.api.app import create_app
from coordinator.metrics import Metrics
from coordinator.settings import Settings
from coordinator.store import StateStore, audit
from tests.security.conftest import SPEC

EVENT = {"dataset": "raw.a", "partition": "2024-01-01", "producer": "el"}

# endpoint -> the scopes that may call it (admin may call everything)
TABLE = [
    (("GET", "/api/partitions"), {"read"}),
    (("GET", "/api/graph"), {"read"}),
    (("GET", "/api/grid"), {"read"}),
    (("GET", "/api/runs"), {"read"}),
    (("GET", "/api/runs/nope"), {"read"}),
    (("GET", "/api/timeline"), {"read"}),
    (("GET", "/api/why?job=prep&partition=2024-01-01"), {"read"}),
    (("GET", "/api/datasets/raw.a"), {"read"}),
    (("GET", "/metrics"), {"read"}),
    (("GET", "/api/audit"), set()),
    (("POST", "/events"), {"publish"}),
    (("POST", "/api/runs/nope/retry"), {"operate"}),
    (("POST", "/api/runs/nope/cancel"), {"operate"}),
    (("POST", "/api/jobs/prep/rerun?partition=2024-01-01"), {"operate"}),
]
SCOPES = ["read", "publish", "operate", "admin"]


@pytest.fixture
def client(home, tokens):
    settings = Settings(home=home, bus="local", tokens=tokens.entries)
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=SPEC, store=store, metrics=Metrics())) as c:
        c.store = store
        yield c


def _call(client, method: str, path: str, headers: dict[str, str]):
    if method == "POST" and path == "/events":
        return client.post(path, content=json.dumps(EVENT), headers=headers)
    return client.request(method, path, headers=headers)


@pytest.mark.parametrize(("endpoint", "allowed"), TABLE, ids=[f"{m} {p}" for (m, p), _ in TABLE])
def test_each_scope_allows_what_it_names_and_nothing_else(client, tokens, endpoint, allowed) -> None:
    method, path = endpoint
    seen = {}
    for scope in SCOPES:
        response = _call(client, method, path, tokens.header(scope))
        seen[scope] = response.status_code
        if scope in allowed or scope == "admin":
            assert response.status_code not in (401, 403), (scope, response.json())
        else:
            assert response.status_code == 403, (scope, response.status_code)
            detail = response.json()["detail"]
            needed = "admin" if not allowed else next(iter(allowed))
            assert detail["reason"] == "forbidden" and f"lacks scope {needed!r}" in detail["detail"]
    for headers in ({}, {"Authorization": "Bearer coord.reader.wrong"}, {"Authorization": "Bearer nonsense"},
                    {"Authorization": f"Basic {tokens.plain['admin']}"}):
        response = _call(client, method, path, headers)
        assert response.status_code == 401 and response.json()["detail"]["reason"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"
    assert len(seen) == len(SCOPES)


def test_allowed_calls_do_their_work_and_are_audited_with_the_token_name(client, tokens) -> None:
    published = client.post("/events", content=json.dumps(EVENT), headers=tokens.header("publish"))
    assert published.status_code == 202
    created = client.post("/api/jobs/prep/rerun", params={"partition": "2024-01-01"},
                          headers=tokens.header("operate"))
    assert created.status_code == 409  # raw.a[2024-01-01] is on the bus, not yet recorded: waiting
    with client.store.begin() as tx:
        rows = audit.recent(tx)
    assert [(r.actor, r.action, r.job, r.partition) for r in rows] == [
        ("publisher", "publish", "raw.a", "2024-01-01")
    ]
    assert rows[0].at > 0 and "as el" in rows[0].detail
    listed = client.get("/api/audit", headers=tokens.header("admin")).json()["audit"]
    assert [a["actor"] for a in listed] == ["publisher"]


def test_the_fivetran_webhook_keeps_its_signature_as_its_auth(home, tokens) -> None:
    settings = Settings(home=home, bus="local", tokens=tokens.entries, webhook_secret="wh-secret-1")
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=SPEC, store=store)) as c:
        for headers in ({}, tokens.header("admin"), tokens.header("publish")):  # a token is no signature
            response = c.post("/webhooks/fivetran", content=b"{}", headers=headers)
            assert response.status_code == 401 and response.json()["detail"]["reason"] == "bad_signature"


def test_healthz_and_the_page_itself_stay_open(client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/ui").status_code == 200  # the page's code; its data needs the token


def test_the_legacy_api_token_is_one_admin_token(home) -> None:
    settings = Settings(home=home, bus="local", api_token="legacy-secret-1")
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=SPEC, store=store)) as c:
        auth = {"Authorization": "Bearer legacy-secret-1"}
        assert c.get("/api/audit", headers=auth).status_code == 200
        assert c.post("/events", content=json.dumps({**EVENT, "dataset": "other.x", "producer": "x"}),
                      headers=auth).status_code == 202
        assert c.get("/api/runs").status_code == 401
