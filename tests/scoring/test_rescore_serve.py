"""An alias move re-scores and pushes through `coord serve`, with no command typed by hand.

The production path end to end: the MLflow tracking server (PostgreSQL backend store, artifacts
served by it), the real score kind, a reverse-ETL push into the product database, and `coord
serve` whose registry poller reads the alias. Three moves, each followed by a re-score of the
newest partition and its push:
  1. the poller's first sighting of NAME@champion (version 1) makes the day ready;
  2. the alias moved directly in the registry (as the MLflow UI or a training pipeline does) is
     picked up by the poller inside serve: version 2;
  3. `coord model promote NAME 1` moves it back and publishes at once: version 1 again.
Each score run's OpenLineage COMPLETE event names the model version it used (the
`coordinator_model` run facet, valid against the OpenLineage schema and its own), and `coord
lineage` shows the version of a scores partition and of the alias move upstream of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from coordinator.scoring.lineage_facet import FACET_NAME, facet_schema
from models import churn
from tests.conftest import unique
from tests.observe.receiver import Receiver
from tests.scoring.conftest import TINY

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(600)]
DAYS = ("2024-06-01", "2024-06-02")
OPENLINEAGE = Path(__file__).parents[1] / "observe" / "schemas" / "openlineage-runevent.schema.json"
ROWS = 400

SPEC = """
datasets:
  reporting.user_features: {partitioning: daily}
  mlflow.models.MODEL: {partitioning: none}
  scores.churn: {partitioning: daily}
  product.user_scores: {partitioning: daily}
jobs:
  churn_scores:
    kind: score
    inputs:
      - reporting.user_features
      - {dataset: mlflow.models.MODEL, mapping: latest, on_change: rerun_latest}
    outputs: [scores.churn]
    timeout_s: 300
    settings:
      model: models:/MODEL@champion
      key_columns: [user_id, feature_date]
      output: LAKE/scores/churn/date={partition}
  push_user_scores:
    kind: reverse_etl
    inputs: [scores.churn]
    outputs: [product.user_scores]
    timeout_s: 300
    settings:
      source: {input: scores.churn}
      destination: {url: "PRODUCT", table: user_scores}
      mode: upsert
      key: [user_id, score_date]
      columns: {user_id: user_id, feature_date: score_date, p_churn: churn_probability,
                model_version: model_version}
      create_table: true
"""


COORD = (sys.executable, "-c", "from coordinator.cli import main; main()")


def coord(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*COORD, *args], env=env, capture_output=True, text=True, timeout=120)


def coord_at_once(*commands: tuple[tuple[str, ...], dict[str, str]]) -> list[subprocess.CompletedProcess]:
    """Independent coord commands (arguments, environment) started together: each spends most of its
    second starting up."""
    procs = [(args, subprocess.Popen([*COORD, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)) for args, env in commands]
    done = []
    try:
        for args, proc in procs:
            out, err = proc.communicate(timeout=120)
            done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def pushed_versions(product: str) -> dict[str, set[int]]:
    """score_date → the model versions of its rows in the product table."""
    engine = create_engine(product)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("select score_date, model_version from user_scores")).all()
    except Exception:  # the table exists once the first push ran
        return {}
    finally:
        engine.dispose()
    found: dict[str, set[int]] = {}
    for day, version in rows:
        found.setdefault(str(day), set()).add(int(version))
    return found


def wait_pushed(product: str, want: dict[str, set[int]], proc: subprocess.Popen,
                within_s: float = 240) -> None:
    deadline = time.monotonic() + within_s
    seen: dict[str, set[int]] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"coord serve exited {proc.returncode}"
        seen = pushed_versions(product)
        if seen == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"the product table holds {seen}, not {want}, after {within_s} s")


def test_an_alias_move_rescores_and_pushes_through_serve(tmp_path: Path, mlflow_server: str) -> None:
    model = unique("churn")
    assert churn.train_and_register(mlflow_server, model_name=model, alias="champion", seed=7, **TINY) == "1"
    assert churn.train_and_register(mlflow_server, model_name=model, alias=None, seed=8, **TINY) == "2"
    lake, product = tmp_path / "lake", f"sqlite:///{tmp_path / 'product.db'}"
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(SPEC.replace("MODEL", model).replace("LAKE", str(lake)).replace("PRODUCT", product))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORD_", "MLFLOW_"))}
    env.update(COORD_HOME=str(home), COORD_BUS="local", COORD_MLFLOW_TRACKING_URI=mlflow_server,
               COORD_REGISTRY_POLL_S="1", COORD_ANONYMOUS_READS="true")
    publishes = []
    for day in DAYS:
        features = lake / "user_features" / f"date={day}"
        features.mkdir(parents=True)
        table = churn.generate_features(ROWS, seed=9)
        table = table.append_column("feature_date", pa.array([day] * ROWS))
        pq.write_table(table, features / "part-0.parquet")
        publish = ("publish", "reporting.user_features", "--partition", day, "--location", str(features),
                   "--rows", str(ROWS))
        publishes.append((publish, env))
    for done in coord_at_once(*publishes):
        assert done.returncode == 0, done.stdout + done.stderr

    port, log = free_port(), tmp_path / "serve.log"
    with Receiver() as lineage, log.open("w") as sink:  # a file, not a pipe: a full pipe stalls logging
        env["COORD_LINEAGE_URL"] = lineage.url + "/api/v1/lineage"
        proc = subprocess.Popen([sys.executable, "-c", "from coordinator.cli import main; main()", "serve",
                                 str(spec), "--port", str(port), "-v"],
                                env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            # 1. the first sighting: both days are scored with version 1 and pushed
            wait_pushed(product, {DAYS[0]: {1}, DAYS[1]: {1}}, proc)
            # 2. moved in the registry itself: only the newest day is re-scored, with version 2
            from mlflow import MlflowClient

            MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server).set_registered_model_alias(
                model, "champion", "2")
            wait_pushed(product, {DAYS[0]: {1}, DAYS[1]: {2}}, proc)
            # 3. promoted through the coordinator: published at once, re-scored and pushed again
            done = coord("model", "promote", model, "1", env=env)
            assert done.returncode == 0, done.stdout + done.stderr
            wait_pushed(product, {DAYS[0]: {1}, DAYS[1]: {1}}, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=90)
        events = list(lineage.bodies)
    out = log.read_text()
    assert proc.returncode == 0, out[-4000:]
    assert f"watching {model}@champion in {mlflow_server}" in out
    assert f"registry alias {model}@champion now points at version 2: published" in out

    # OpenLineage: every event valid; each score run's COMPLETE names the model version it used
    formats = jsonschema.FormatChecker()
    validator = jsonschema.Draft202012Validator(json.loads(OPENLINEAGE.read_text()), format_checker=formats)
    facet_validator = jsonschema.Draft202012Validator(facet_schema(), format_checker=formats)
    for event in events:
        validator.validate(event)
    scored = sorted((e["eventTime"], e["run"]["facets"][FACET_NAME]) for e in events
                    if e["job"]["name"] == "churn_scores" and e["eventType"] == "COMPLETE")
    for _, facet in scored:
        facet_validator.validate(facet)
    assert not facet_validator.is_valid({k: v for k, v in scored[0][1].items() if k != "version"})
    assert sorted(f["version"] for _, f in scored[:2]) == ["1", "1"]            # both days, version 1
    assert [(f["name"], f["version"], f["uri"]) for _, f in scored[2:]] == [
        (model, "2", f"models:/{model}/2"), (model, "1", f"models:/{model}/1")]   # the newest day twice
    assert all(FACET_NAME not in e["run"]["facets"] for e in events if e["eventType"] == "START")

    # coord lineage: the newest day's scores were made with version 1, after the promote upstream
    lineage_of_day = ("lineage", "scores.churn", "--partition", DAYS[1], "--spec", str(spec))
    wide = {**env, "COLUMNS": "250"}     # the text view: one line per version, not wrapped
    shown, text_view = coord_at_once(((*lineage_of_day, "--json"), env), (lineage_of_day, wide))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    found = json.loads(shown.stdout)
    assert found["event"]["model"] == {"name": model, "version": "1", "uri": f"models:/{model}/1"}
    registry_inputs = [c for c in found["upstream"]["children"] if c["dataset"] == f"mlflow.models.{model}"]
    assert [c["model"]["version"] for c in registry_inputs] == ["1"]
    assert f"model {model} version 1 (models:/{model}/1)" in text_view.stdout


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
