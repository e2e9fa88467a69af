"""Known secrets planted in every setting that can hold one and in the job settings of each kind
are found in none of the coordinator's outputs: `coord info`, `coord show` and `coord runs`, the UI
pages and every /api read, /metrics, the coordinator's log lines, the alert webhooks' payloads
and the OpenLineage events. The jobs do get them (their own log files hold them), and the
errors they end with quote them (masked before the state store takes them) — so every absence
below is masking at work, not a secret unused.

A real service (engine, HTTP side on 127.0.0.1, lineage, alerts), a PostgreSQL state store whose
URL carries a password, a `command` job that prints its secrets and fails, and a `spark` job run
through a stand-in spark-submit (COORD_SPARK_SUBMIT) that prints its command line — --conf
values from the settings and the job — and fails with it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.service import Service
from coordinator.settings import Settings
from coordinator.spec import load_spec
from coordinator.store import StateStore
from coordinator.tokens import TokenEntry, hash_token
from tests.observe.receiver import Receiver

COORD = str(Path(sys.executable).parent / "coord")
DAY = "2024-03-01"
S = {  # every planted secret, each unique and long enough to be found anywhere
    name: f"pl4nt-{name}-Zq81x"
    for name in ("statepw", "productpw", "saslpw", "registrypw", "mlflowpw", "sparkconf", "apitoken",
                 "webhook", "alerturl", "lineagepw", "envpw", "argkey", "sparkjobconf", "sparkarg",
                 "destpw", "desturl", "elpw", "scorepw")
}
READ_TOKEN = "coord.viewer.pl4nt-readtoken-Zq81x"
OPERATE_TOKEN = "coord.ops.pl4nt-operatetoken-Zq81x"
S["readtoken"], S["operatetoken"] = READ_TOKEN, OPERATE_TOKEN

SPEC = """\
datasets:
  raw.a: {partitioning: daily}
  never.comes: {partitioning: daily}
jobs:
  leaky:
    kind: command
    inputs: [raw.a]
    outputs: [leak.out]
    settings:
      command:
        - sh
        - -c
        - 'echo "password=$DB_PASSWORD key $2"; echo "ERROR: refused $2 with $DB_PASSWORD" >&2; exit 2'
        - sh
        - --api-key
        - @argkey@
      env: {DB_PASSWORD: @envpw@}
  sparky:
    kind: spark
    inputs: [raw.a]
    outputs: [spark.out]
    settings:
      application: @app@
      conf: {spark.hadoop.fs.s3a.access.key: @sparkjobconf@}
      args: [--jdbc-url, "postgresql://etl:@sparkarg@@127.0.0.1:5432/wh"]
      output: @tmp@/out/{partition}
  push:
    kind: reverse_etl
    inputs: [never.comes]
    settings:
      source: {input: never.comes}
      destination: {url: "postgresql://app:@desturl@@127.0.0.1:5432/app", table: scores, password: @destpw@}
      key: [id]
  land:
    kind: el
    inputs: [never.comes]
    outputs: [lake.users]
    settings:
      source: "sources:users"
      destination: {type: postgres, url: "postgresql://loader@127.0.0.1:5432/wh", password: @elpw@}
      dataset_name: lake
  score:
    kind: score
    inputs: [never.comes]
    outputs: [scores.x]
    settings:
      model: models:/churn@prod
      key_columns: [id]
      output: @tmp@/scores/{partition}
      tracking_uri: "postgresql://ml:@scorepw@@127.0.0.1:5432/ml"
"""

FAKE_SPARK_SUBMIT = """#!/bin/sh
echo "spark-submit $*"
echo "Exception in thread \\"main\\" java.lang.RuntimeException: cannot start with $*" >&2
exit 1
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(settings_env: dict[str, str]) -> dict[str, str]:
    plain = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
    return plain | settings_env | {"COLUMNS": "400"}


def _leaks(text: str) -> list[str]:
    return [name for name, value in S.items() if value in text]


@pytest.fixture
def planted(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch):
    for name in [k for k in os.environ if k.startswith("COORD_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "app.py").write_text("print('never runs')\n")
    (tmp_path / "sources.py").write_text("def users():\n    return []\n")  # the el job never runs
    submit = tmp_path / "spark-submit"
    submit.write_text(FAKE_SPARK_SUBMIT)
    submit.chmod(0o755)
    head, _, rest = postgres_url.partition("://")
    user_info, _, where = rest.rpartition("@")
    state_url = f"{head}://{user_info.split(':')[0]}:{S['statepw']}@{where}"  # trust auth: any password
    values = {"tmp": str(tmp_path), "app": str(tmp_path / "app.py"), **S}
    spec_text = re.sub(r"@(\w+)@", lambda m: values[m[1]], SPEC)
    spec_file = tmp_path / "pipeline.yaml"
    spec_file.write_text(spec_text)
    tokens = [
        TokenEntry(name="viewer", hash=hash_token(READ_TOKEN), scopes=["read"]),
        TokenEntry(name="ops", hash=hash_token(OPERATE_TOKEN), scopes=["operate", "read"]),
    ]
    env = {
        "COORD_HOME": str(home),
        "COORD_BUS": "local",
        "COORD_STATE_URL": state_url,
        "COORD_PRODUCT_DB_URL": f"postgresql://app:{S['productpw']}@127.0.0.1:5432/app",
        "COORD_KAFKA_SECURITY": json.dumps({"sasl.username": "svc", "sasl.password": S["saslpw"]}),
        "COORD_SCHEMA_REGISTRY_URL": f"http://reg:{S['registrypw']}@127.0.0.1:8081",
        "COORD_MLFLOW_TRACKING_URI": f"postgresql://ml:{S['mlflowpw']}@127.0.0.1:5432/ml",
        "COORD_SPARK_CONF": json.dumps({"spark.hadoop.fs.s3a.secret.key": S["sparkconf"]}),
        "COORD_SPARK_SUBMIT": str(submit),
        "COORD_API_TOKEN": S["apitoken"],
        "COORD_TOKENS": json.dumps([t.model_dump(exclude_defaults=True) for t in tokens]),
        "COORD_WEBHOOK_SECRET": S["webhook"],
    }
    return tmp_path, spec_file, spec_text, env


def test_no_planted_secret_shows_in_any_output(planted, caplog: pytest.LogCaptureFixture) -> None:
    tmp_path, spec_file, spec_text, env = planted
    caplog.set_level(logging.INFO)
    outputs: dict[str, str] = {}
    port = _free_port()
    with Receiver() as receiver:
        lineage_url = receiver.url.replace("http://", f"http://ol:{S['lineagepw']}@") + "/api/v1/lineage"
        alert_url = f"{receiver.url}/alerts?token={S['alerturl']}"
        served_env = {**env, "COORD_LINEAGE_URL": lineage_url,
                      "COORD_ALERT_WEBHOOKS": json.dumps([alert_url])}
        # the engine's settings: everything but the registry, which a local bus's codec would call
        settings = Settings(**{
            k.removeprefix("COORD_").lower(): (json.loads(v) if v.startswith(("{", "[")) else v)
            for k, v in served_env.items() if k != "COORD_SCHEMA_REGISTRY_URL"
        })
        spec = load_spec(spec_file)
        with Publisher(_local_bus(settings), settings) as p:
            p.publish_many([CompletionEvent(event_id="raw-a-1", dataset="raw.a", partition=DAY)])
            p.flush()
        with Service(spec, settings, observe=True, http=("127.0.0.1", port)) as service:
            stats = service.run(until_idle=True, timeout_s=90)
            assert stats.failed == 2
            store = service.store
            deadline = time.monotonic() + 20  # the watcher's tick raises an alert per failed run
            while sum(p.startswith("/alerts") for p in receiver.paths) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sum(p.startswith("/alerts") for p in receiver.paths) == 2
            outputs.update(_http_outputs(f"http://127.0.0.1:{port}", store))
        outputs["alerts"] = json.dumps([b for b, p in zip(receiver.bodies, receiver.paths, strict=True)
                                        if p.startswith("/alerts")])
        outputs["lineage"] = json.dumps([b for b, p in zip(receiver.bodies, receiver.paths, strict=True)
                                         if p.startswith("/api/v1/lineage")])
        assert any("/alerts" in p for p in receiver.paths) and any("lineage" in p for p in receiver.paths)
    outputs["logs"] = caplog.text
    info_env = _env(served_env)
    for name, argv in {
        "coord info": [COORD, "info"],
        "coord runs": [COORD, "runs"],
        **{f"coord show {r}": [COORD, "show", r, "--spec", str(spec_file)] for r in _run_ids(settings)},
    }.items():
        done = subprocess.run(argv, capture_output=True, text=True, env=info_env, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, (name, done.stderr)
        outputs[name] = done.stdout + done.stderr

    # the secrets were there to leak: the jobs got them and printed them into their own logs
    logs = "".join(p.read_text() for p in (settings.home / "runs").rglob("log"))
    assert {"envpw", "argkey", "sparkconf", "sparkjobconf", "sparkarg"} <= set(_leaks(logs))
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        errors = " ".join(r.error or "" for r in tx.list_runs(limit=10))
    assert _leaks(errors) == [] and errors.count("***") >= 4  # masked before the store took them
    assert "refused *** with ***" in errors
    assert "spark.hadoop.fs.s3a.secret.key=***" in outputs["/api/runs/sparky"]
    assert "password=*** key ***" in outputs["/api/runs/leaky"]  # the log tail, masked on display

    found = {where: _leaks(text) for where, text in outputs.items() if _leaks(text)}
    assert found == {}, found
    assert len(outputs) >= 20


def _local_bus(settings: Settings):
    from coordinator.bus.factory import open_bus

    return open_bus(settings)


def _run_ids(settings: Settings) -> list[str]:
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        return [r.run_id for r in tx.list_runs(limit=10)]


def _http_outputs(base: str, store: StateStore) -> dict[str, str]:
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    operate = {"Authorization": f"Bearer {OPERATE_TOKEN}"}
    admin = {"Authorization": f"Bearer {S['apitoken']}"}
    out: dict[str, str] = {}
    with store.begin() as tx:
        runs = tx.list_runs(limit=10)
    by_job = {r.job: r for r in runs}
    with httpx.Client(base_url=base, timeout=10) as client:
        paths = ["/ui", "/ui/static/app.js", "/ui/static/index.html", "/api/partitions",
                 f"/api/graph?partition={DAY}", "/api/grid", "/api/runs", "/api/timeline", "/metrics",
                 f"/api/why?job=leaky&partition={DAY}", "/api/datasets/raw.a", "/openapi.json"]
        for path in paths:
            response = client.get(path, headers=read)
            assert response.status_code in (200, 404), (path, response.status_code, response.text[:300])
            out[path] = response.text
        for r in runs:
            out[f"/ui/runs/{r.run_id}"] = client.get(f"/ui/runs/{r.run_id}", headers=read).text
            response = client.get(f"/api/runs/{r.run_id}", headers=read)
            assert response.status_code == 200
            out[f"/api/runs/{r.job}"] = response.text
        # operator actions answer masked too, and are audited under the token's name
        retried = client.post(f"/api/runs/{by_job['leaky'].run_id}/retry", headers=operate)
        assert retried.status_code == 200, retried.text
        out["retry"] = retried.text
        out["/api/audit"] = client.get("/api/audit", headers=admin).text
        assert json.loads(out["/api/audit"])["audit"][0]["actor"] == "ops"
        again = client.get(f"/api/runs/{by_job['leaky'].run_id}", headers=read)
        out["/api/runs/leaky after retry"] = again.text
        refused = client.get("/api/runs", headers={"Authorization": f"Bearer {S['webhook']}"})
        assert refused.status_code == 401
        out["401"] = refused.text
    return out
