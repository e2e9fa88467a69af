"""A publish token publishes only datasets matching its patterns, and only as its producer."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from coordinator.api.app import create_app
from coordinator.settings import Settings
from coordinator.store import StateStore, audit
from tests.security.conftest import SPEC


@pytest.fixture
def client(home, tokens):
    settings = Settings(home=home, bus="local", tokens=tokens.entries)
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=SPEC, store=store)) as c:
        c.store = store
        yield c


def _post(client, headers, **event):
    body = {"dataset": "raw.a", "partition": "2024-01-01", "producer": "el", **event}
    return client.post("/events", content=json.dumps(body), headers=headers)


def test_a_publish_outside_the_patterns_or_as_another_producer_is_refused(client, tokens) -> None:
    publisher = tokens.header("publish")
    assert _post(client, publisher).status_code == 202
    outside = _post(client, publisher, dataset="other.x")
    assert outside.status_code == 403
    assert outside.json()["detail"] == {
        "reason": "forbidden", "detail": "token 'publisher' may not publish 'other.x' (allowed: raw.*)"}
    impostor = _post(client, publisher, producer="dbt")
    assert impostor.status_code == 403
    assert impostor.json()["detail"]["detail"] == "token 'publisher' publishes as producer 'el', not 'dbt'"
    spoof = _post(client, publisher, producer="coordinator")  # never the coordinator's own events
    assert spoof.status_code == 403
    # an admin is not bounded
    assert _post(client, tokens.header("admin"), dataset="other.x", producer="dbt").status_code == 202
    with client.store.begin() as tx:
        rows = audit.recent(tx)
    assert [(r.actor, r.job) for r in rows] == [("administrator", "other.x"), ("publisher", "raw.a")]


def test_patterns_are_fnmatch_and_case_sensitive(home) -> None:
    from coordinator.tokens import TokenEntry, hash_token

    token = "coord.lake.abcdefghijklmnopqrstuvwxyz012345"
    entry = TokenEntry(name="lake", hash=hash_token(token), scopes=["publish"],
                       datasets=["raw.?", "fivetran.app.*"], producer="fivetran")
    settings = Settings(home=home, bus="local", tokens=[entry])
    spec_text = SPEC.model_copy(update={"accept_unknown_datasets": True})
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=spec_text, store=store)) as c:
        auth = {"Authorization": f"Bearer {token}"}
        ok = [_post(c, auth, dataset=d, producer="fivetran").status_code
              for d in ("raw.a", "fivetran.app.users")]
        assert ok == [202, 202]
        refused = [_post(c, auth, dataset=d, producer="fivetran").status_code
                   for d in ("raw.ab", "RAW.a", "fivetran.other.users")]
        assert refused == [403, 403, 403]


def test_a_publish_token_without_bounds_is_a_settings_error(home) -> None:
    from coordinator.errors import SettingsError
    from coordinator.tokens import hash_token

    unbounded = {"name": "loose", "hash": hash_token("coord.loose.x"), "scopes": ["publish"]}
    with pytest.raises(SettingsError, match="a publish token needs `datasets` patterns and a producer"):
        Settings(home=home, tokens=[unbounded])
