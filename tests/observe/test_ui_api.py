"""The UI's JSON API without a browser: read-only without a token, actions with it, the graph."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from coordinator.api.app import create_app
from coordinator.api.graph import layers
from coordinator.metrics import Metrics
from coordinator.settings import Settings
from coordinator.store import StateStore
from tests.observe.journey import DAY, NEXT, publish, raw_events, run_engine, spec_for

TOKEN = "t0ken"


@contextmanager
def _served(settings: Settings, spec) -> Iterator[TestClient]:
    """The app over the settings' store, with /metrics."""
    with StateStore(settings.resolved_state_url()) as store:
        app = create_app(settings, spec=spec, store=store, metrics=Metrics().watch(store))
        with TestClient(app) as client:
            yield client


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


def test_runs_list_filters_pages_and_rejects_unknown_states(env):
    tmp_path, _, base = env
    spec = spec_for(tmp_path / "marker")
    settings = Settings(home=base.home, bus="local", anonymous_reads=True)
    publish(settings, raw_events())
    run_engine(spec, settings)  # prep[DAY], prep[NEXT] succeeded; load[DAY] failed
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=spec, store=store)) as client:
        every = client.get("/api/runs").json()
        assert every["total"] == 3 and len(every["runs"]) == 3
        assert all(r["started_at"] and r["duration_s"] is not None for r in every["runs"])
        assert {r["job"] for r in client.get("/api/runs", params={"job": "prep"}).json()["runs"]} == {"prep"}
        two = client.get("/api/runs", params=[("state", "failed"), ("state", "succeeded")]).json()
        assert two["total"] == 3
        later = client.get("/api/runs", params={"partition_from": NEXT}).json()["runs"]
        assert [r["partition"] for r in later] == [NEXT]
        assert client.get("/api/runs", params={"partition_to": DAY}).json()["total"] == 2
        newest = every["runs"][0]["created_at"]
        assert client.get("/api/runs", params={"since": newest + 1}).json()["total"] == 0
        assert client.get("/api/runs", params={"until": newest + 1}).json()["total"] == 3
        first = client.get("/api/runs", params={"limit": 2}).json()
        second = client.get("/api/runs", params={"limit": 2, "offset": 2}).json()
        assert len(first["runs"]) == 2 and len(second["runs"]) == 1 and second["total"] == 3
        assert {r["run_id"] for r in first["runs"]} | {r["run_id"] for r in second["runs"]} \
            == {r["run_id"] for r in every["runs"]}
        svg = client.get("/api/graph", params={"partition": DAY}).json()["svg"]
        assert re.search(r">succeeded · \d+\.\ds<", svg) and re.search(r">failed · \d+\.\ds<", svg)
        bad = client.get("/api/runs", params={"state": "faild"})
        assert bad.status_code == 422 and "'faild'" in bad.json()["detail"]["detail"]
        assert client.get("/api/runs", params={"job": "nope"}).status_code == 404


def test_why_names_the_missing_inputs_and_what_to_run_next(env):
    tmp_path, _, base = env
    spec = spec_for(tmp_path / "marker")
    settings = Settings(home=base.home, bus="local", api_token=TOKEN, anonymous_reads=True)
    publish(settings, raw_events())
    run_engine(spec, settings)
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=spec, store=store)) as client:
        nxt = client.get("/api/why", params={"job": "load", "partition": NEXT}).json()
        assert nxt["state"] == "waiting"
        assert [r["text"] for r in nxt["reasons"]] == [
            "raw.b[2024-01-02] has no version yet (published from outside the pipeline)"]
        after = client.get("/api/why", params={"job": "after", "partition": DAY}).json()
        [missing] = after["reasons"]
        assert missing["dataset"] == "mid" and "load's run there is failed" in missing["text"]
        load = client.get("/api/why", params={"job": "load", "partition": DAY}).json()
        assert load["state"] == "failed" and load["next"]["command"] == f"coord retry {load['run_id'][:12]}"
        assert load["reasons"][0]["kind"] == "failed" and "exit code 3" in load["reasons"][0]["text"]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        queued = client.post(f"/api/runs/{load['run_id']}/retry", headers=auth)
        assert queued.json()["try"] == {"n": 0, "of": 1, "overall": 1}  # a fresh round, not begun
        why = client.get("/api/why", params={"job": "load", "partition": DAY}).json()
        kinds = [r["kind"] for r in why["reasons"]]
        assert kinds == ["no_instance"]  # ready, due, nobody to start it
        assert client.get("/api/why", params={"job": "load"}).status_code == 422
        assert client.get("/api/why", params={"job": "nope", "partition": DAY}).status_code == 404
    (tmp_path / "marker").touch()
    run_engine(spec, settings)
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=spec, store=store)) as client:
        [run] = client.get("/api/runs", params={"job": "load"}).json()["runs"]
        # the second attempt overall, the first of the budget the retry gave: not "2/2"
        assert run["state"] == "succeeded" and run["try"] == {"n": 1, "of": 1, "overall": 2}


def _sample(exposition: str, name: str) -> float:
    [line] = [line for line in exposition.splitlines() if line.startswith(name + " ")]
    return float(line.split()[-1])


def test_a_run_whose_owner_is_gone_says_so_and_ages_in_the_metrics(env):
    import time

    from coordinator.operations import retry

    tmp_path, _, base = env
    spec = spec_for(tmp_path / "marker")
    settings = Settings(home=base.home, bus="local", anonymous_reads=True)
    publish(settings, raw_events())
    run_engine(spec, settings)
    with _served(settings, spec) as client:
        store = client.app.state.store
        [load] = client.get("/api/runs", params={"job": "load"}).json()["runs"]
        retry(store, load["run_id"])
        with store.begin() as tx:  # taken by an instance that then vanished (no lease of its own)
            [claimed] = tx.claim("default", 4, "vanished#1", time.time())
        why = client.get("/api/why", params={"job": "load", "partition": DAY}).json()
        [reason] = why["reasons"]
        assert (reason["kind"], reason["owner"], reason["lease"]) == ("dead_owner", "vanished#1", "unknown")
        assert "no live instance can adopt it" in reason["text"]
        text = client.get("/metrics").text
        assert _sample(text, 'coord_pool_slots_used{pool="default"}') == 1
        assert _sample(text, 'coord_oldest_running_seconds{job="load"}') >= 0
        assert claimed.run_id == load["run_id"]


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_blocked_run_traces_to_the_changed_column_and_is_superseded_by_the_fix(env, database, request):
    """On both stores: the superseded count and the run pages' reads are SQL of their own."""
    from tests.observe.recovery import DAY as PDAY
    from tests.observe.recovery import plans, recovery_spec

    _, _, base = env
    spec = recovery_spec()
    url = request.getfixturevalue("postgres_url") if database == "postgres" else None
    settings = Settings(home=base.home, bus="local", anonymous_reads=True, state_url=url)
    publish(settings, [plans(1, "string")])
    run_engine(spec, settings)
    publish(settings, [plans(2, "int64")])
    run_engine(spec, settings)
    with _served(settings, spec) as client:
        [blocked] = client.get("/api/runs", params={"state": "blocked"}).json()["runs"]
        detail = client.get(f"/api/runs/{blocked['run_id']}").json()
        [plan] = detail["inputs"]
        assert (plan["event_id"], plan["version"], plan["versions"]) == ("plans-v2", 2, 2)
        assert plan["changed"] == ["plan: string → int64"] and plan["previous_event_id"] == "plans-v1"
        assert {"name": "plan", "type": "int64", "nullable": True} in plan["columns"]
        assert detail["next"]["command"] == f"coord rerun model -p {PDAY}"
        assert 'coord_runs{job="model",state="blocked"} 1.0' in client.get("/metrics").text
        first = client.get("/api/runs", params={"job": "model", "state": "succeeded"}).json()["runs"][0]
        [scored] = client.get(f"/api/runs/{first['run_id']}").json()["outputs"]
        assert [c["job"] for c in scored["consumers"]] == ["report"]
    publish(settings, [plans(3, "string")])
    run_engine(spec, settings)
    with _served(settings, spec) as client:
        newest = client.get("/api/runs", params={"job": "model", "state": "succeeded"}).json()["runs"][0]
        again = client.get(f"/api/runs/{blocked['run_id']}").json()
        assert again["superseded_by"] == newest["run_id"] and again["next"] is None
        text = client.get("/metrics").text
        assert 'state="blocked"' not in text and 'coord_runs{job="model",state="superseded"} 1.0' in text
        fresh = _sample(text, 'coord_dataset_freshness_seconds{dataset="raw.plans"}')
        assert fresh > 3600 * 24 * 365  # v3 was produced in March 2024
        assert "coord_oldest_running_seconds{" not in text and "coord_pool_slots_used{" not in text  # idle
        ds = client.get("/api/datasets/raw.plans").json()
        assert [(v["event_id"], v["changed"]) for v in ds["versions"]] == [
            ("plans-v3", ["plan: int64 → string"]), ("plans-v2", ["plan: string → int64"]), ("plans-v1", [])]
        assert [c["state"] for c in ds["versions"][1]["consumers"]] == ["blocked"]
        assert client.get("/api/datasets/nope").status_code == 404
        row = {r["job"]: r for r in client.get("/api/timeline").json()["rows"]}["model"]
        assert row["cells"][0]["state"] == "succeeded" and row["cells"][0]["runs"] == 3


def test_the_gauges_count_a_partition_by_its_newest_run(env):
    """Blocked twice (a second bad version): one blocked partition, the older run superseded."""
    from tests.observe.recovery import plans, recovery_spec

    _, _, base = env
    spec = recovery_spec()
    settings = Settings(home=base.home, bus="local", anonymous_reads=True)
    for version, plan_type in ((1, "string"), (2, "int64"), (3, "int64")):
        publish(settings, [plans(version, plan_type)])
        run_engine(spec, settings)
    with _served(settings, spec) as client:
        newer, older = client.get("/api/runs", params={"state": "blocked"}).json()["runs"]
        assert older["superseded_by"] == newer["run_id"] and newer["superseded_by"] is None
        assert client.get(f"/api/runs/{older['run_id']}").json()["next"] is None  # act on the newer
        assert client.get(f"/api/runs/{newer['run_id']}").json()["next"]["command"].startswith("coord rerun")
        text = client.get("/metrics").text
        assert _sample(text, 'coord_runs{job="model",state="blocked"}') == 1
        assert _sample(text, 'coord_runs{job="model",state="superseded"}') == 1
