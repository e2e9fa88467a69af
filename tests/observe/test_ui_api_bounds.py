"""The UI's JSON API at its bounds: a rerun of a key the job cannot have, paging numbers beyond
any store's integers, times that are not numbers, and (on PostgreSQL, whose text cannot hold
one) NUL characters in path or query values. Each is a 422 with its reason, never a 500 or a
run nobody could ever start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coordinator.api.app import create_app
from coordinator.cli import build_app
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = """\
datasets:
  raw.daily: {partitioning: daily}
  raw.ref: {}
jobs:
  daily:
    kind: command
    inputs: [raw.daily]
    outputs: [out.daily]
    settings: {command: [sh, -c, 'true']}
  flat:
    kind: command
    inputs: [raw.ref]
    outputs: [out.ref]
    settings: {command: [sh, -c, 'true']}
"""


def _client(home: Path, state_url: str) -> Iterator[TestClient]:
    settings = Settings(home=home, bus="local", api_token=TOKEN, anonymous_reads=True)
    with (
        StateStore(state_url) as store,
        TestClient(create_app(settings, spec=parse_spec(SPEC), store=store)) as client,
    ):
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")


def _reason(response) -> str:
    return response.json()["detail"]["reason"]


# ------------------------------------------------------------------ rerun: the job's own keys
@pytest.mark.parametrize(
    ("job", "partition"),
    [
        ("flat", "2024-01-01"),  # unpartitioned: no key at all
        ("daily", "yesterday"),
        ("daily", "2024-13-45"),
        ("daily", "2024-01-01T05"),
        ("daily", None),
    ],
)
def test_a_rerun_of_a_key_the_job_cannot_have_is_a_bad_partition(client, job, partition) -> None:
    params = {} if partition is None else {"partition": partition}
    response = client.post(f"/api/jobs/{job}/rerun", params=params, headers=AUTH)
    assert (response.status_code, _reason(response)) == (422, "bad_partition"), response.text
    assert f"job {job}" in response.json()["detail"]["detail"]
    assert client.get("/api/runs").json()["total"] == 0


def test_a_rerun_of_a_key_the_job_has_still_waits_for_its_inputs(client) -> None:
    response = client.post("/api/jobs/daily/rerun", params={"partition": "2024-01-01"}, headers=AUTH)
    assert response.status_code == 409 and "raw.daily[2024-01-01]" in response.json()["detail"]["detail"]


def test_coord_rerun_refuses_a_key_the_job_cannot_have(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COORD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COORD_BUS", "local")
    monkeypatch.delenv("COORD_STATE_URL", raising=False)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(SPEC)
    out = CliRunner().invoke(
        build_app(),
        ["rerun", "flat", "--spec", str(spec), "--partition", "2024-01-01"],
        catch_exceptions=False,
        terminal_width=200,
    )
    assert out.exit_code == 1
    assert "error: job flat: unpartitioned dataset got partition '2024-01-01'" in out.output


# ------------------------------------------------------------------ numbers in the query
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/runs", {"offset": "99999999999999999999"}),
        ("/api/runs", {"offset": str(2**63)}),
        ("/api/runs", {"offset": "-1"}),
        ("/api/runs", {"since": "nan"}),
        ("/api/runs", {"since": "inf"}),
        ("/api/runs", {"until": "-inf"}),
        ("/api/partitions", {"limit": "-1"}),
        ("/api/partitions", {"limit": "0"}),
        ("/api/partitions", {"limit": "99999999999999999999"}),
    ],
)
def test_numbers_out_of_bounds_are_refused(client, path, params) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text


def test_numbers_in_bounds_are_served(client) -> None:
    assert client.get("/api/runs", params={"offset": "1000000", "since": "0"}).json()["runs"] == []
    assert client.get("/api/partitions", params={"limit": "1"}).json() == {"partitions": []}


# ------------------------------------------------------------------ NUL on PostgreSQL
@pytest.fixture
def pg_client(tmp_path: Path, postgres_url: str) -> Iterator[TestClient]:
    yield from _client(tmp_path, postgres_url)


@pytest.mark.parametrize(
    ("method", "path", "params", "where"),
    [
        ("get", "/api/runs", {"partition": "\0"}, "query parameter 'partition'"),
        ("get", "/api/runs", {"job": "a\0b"}, "query parameter 'job'"),
        ("get", "/api/runs/%00", {}, "path parameter 'run_id'"),
        ("get", "/api/datasets/a%00b", {}, "path parameter 'name'"),
        ("get", "/api/graph", {"partition": "\0"}, "query parameter 'partition'"),
        ("get", "/api/why", {"job": "daily", "partition": "\0"}, "query parameter 'partition'"),
        ("post", "/api/jobs/daily/rerun", {"partition": "\0"}, "query parameter 'partition'"),
        ("post", "/api/runs/%00/retry", {}, "path parameter 'run_id'"),
    ],
)
def test_a_nul_in_a_path_or_query_value_is_invalid(pg_client, method, path, params, where) -> None:
    response = pg_client.request(method, path, params=params, headers=AUTH)
    assert (response.status_code, _reason(response)) == (422, "invalid"), response.text
    assert response.json()["detail"]["detail"] == f"{where} contains a NUL character"
    assert pg_client.get("/api/runs", params={"partition": "2024-01-01"}).status_code == 200  # still serves
