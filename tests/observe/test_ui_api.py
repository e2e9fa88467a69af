"""The UI's JSON API without a browser: read-only without a token, actions with it, the graph."""

from __future__ import annotations

from fastapi.testclient import TestClient

from coordinator.api.app import create_app
from coordinator.api.graph import layers
from coordinator.settings import Settings
from coordinator.store import StateStore
from tests.observe.journey import DAY, NEXT, publish, raw_events, run_engine, spec_for

TOKEN = "t0ken"


def test_layers_put_each_node_after_its_inputs(tmp_path):
    grid = layers(spec_for(tmp_path / "marker"))
    assert grid == [["d:raw.a"], ["j:prep"], ["d:clean.a", "d:raw.b"], ["j:load"], ["d:mid"], ["j:after"],
                    ["d:out"]]


def test_reads_are_open_and_actions_need_the_token(env):
    tmp_path, _, base = env
    spec = spec_for(tmp_path / "marker")
    settings = Settings(home=base.home, bus="local", api_token=TOKEN, anonymous_reads=True)
    publish(settings, raw_events())
    run_engine(spec, settings)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=spec, store=store)) as client:
        assert client.get("/api/partitions").json() == {"partitions": [NEXT, DAY]}
        graph = client.get("/api/graph", params={"partition": DAY}).json()
        assert graph["jobs"]["load"]["state"] == "failed" and graph["jobs"]["after"]["state"] == "idle"
        assert 'data-job="load" data-state="failed"' in graph["svg"]
        nxt = client.get("/api/graph", params={"partition": NEXT}).json()["jobs"]
        assert nxt["prep"]["state"] == "succeeded" and nxt["load"]["state"] == "waiting"
        grid = client.get("/api/grid").json()
        assert grid["partitions"] == [DAY, NEXT]
        mid = [r for r in grid["rows"] if r["dataset"] == "mid"][0]
        assert [c["state"] for c in mid["cells"]] == ["failed", "missing"]
        raw_a = [r for r in grid["rows"] if r["dataset"] == "raw.a"][0]
        assert raw_a["fresh_s"] is not None and raw_a["cells"][0]["event_id"] == "raw-a-0101"

        [load] = client.get("/api/runs", params={"state": "failed"}).json()["runs"]
        detail = client.get(f"/api/runs/{load['run_id']}").json()
        assert detail["command"][:2] == ["sh", "-c"] and "marker missing" in detail["log"]
        assert {i["event_id"] for i in detail["inputs"]} >= {"raw-b-0101"}
        assert [o["status"] for o in detail["outputs"]] == ["failed"]
        assert client.get("/api/runs/nope").status_code == 404

        retry = f"/api/runs/{load['run_id']}/retry"
        assert client.post(retry).status_code == 401
        assert client.post(retry, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post(retry, headers=auth).json()["state"] == "ready"
        assert client.post(retry, headers=auth).status_code == 409  # not failed any more

        assert client.post("/api/jobs/prep/rerun", params={"partition": DAY}).status_code == 401
        created = client.post("/api/jobs/prep/rerun", params={"partition": DAY}, headers=auth).json()
        assert [r["state"] for r in created["created"]] == ["ready"]
        waiting = client.post("/api/jobs/load/rerun", params={"partition": NEXT}, headers=auth)
        assert waiting.status_code == 409 and "raw.b[2024-01-02]" in waiting.json()["detail"]["detail"]
        assert client.post("/api/jobs/nope/rerun", headers=auth).status_code == 404
        assert client.get("/", follow_redirects=False).headers["location"] == "/ui"
        assert "app.js" in client.get(f"/ui/runs/{load['run_id']}").text


def test_actions_are_refused_when_no_token_is_configured(env):
    tmp_path, _, settings = env
    spec = spec_for(tmp_path / "marker")
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=spec, store=store)) as client:
        response = client.post("/api/runs/x/retry", headers={"Authorization": "Bearer x"})
        assert response.status_code == 503 and response.json()["detail"]["reason"] == "not_configured"
