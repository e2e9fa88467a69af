"""`coord push JOB --partition P`: dry run, then the push, from a spec's reverse_etl job."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from coordinator.cli import build_app
from coordinator.push.run import SETTINGS_ENV

SPEC = """
datasets:
  scores.churn: {}
  product.user_scores: {}
jobs:
  push_scores:
    kind: reverse_etl
    inputs: [scores.churn]
    outputs: [product.user_scores]
    settings:
      source: {parquet: "PARQUET/{partition}"}
      destination: {url: "sqlite:///DB", table: user_scores}
      mode: mirror
      key: [user_id]
      create_table: true
"""


def test_coord_push_dry_run_then_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scores" / "2024-05-01").mkdir(parents=True)
    pq.write_table(
        pa.table({"user_id": [1, 2, 3], "churn": [0.5, 0.25, 0.125]}),
        tmp_path / "scores" / "2024-05-01" / "part-0.parquet",
    )
    db = tmp_path / "product.db"
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(SPEC.replace("PARQUET", str(tmp_path / "scores")).replace("DB", str(db)))
    monkeypatch.setenv("COORD_HOME", str(tmp_path / "home"))
    app, runner = build_app(), CliRunner()

    dry = runner.invoke(app, ["push", "push_scores", "--spec", str(spec), "-p", "2024-05-01", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would create the destination table" in dry.output and "'user_id': 1" in dry.output
    assert (
        not db.exists()
        or not sqlite3.connect(db)
        .execute("SELECT 1 FROM sqlite_master WHERE name = 'user_scores'")
        .fetchone()
    )

    done = runner.invoke(app, ["push", "push_scores", "--spec", str(spec), "-p", "2024-05-01"])
    assert done.exit_code == 0, done.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT * FROM user_scores ORDER BY 1").fetchall() == [
            (1, 0.5),
            (2, 0.25),
            (3, 0.125),
        ]

    missing = runner.invoke(app, ["push", "push_scores", "--spec", str(spec), "-p", "2024-05-02"])
    assert missing.exit_code == 1 and "PushError" in missing.output


def test_coord_push_and_the_push_child_report_an_error_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "scores" / "2024-05-01").mkdir(parents=True)
    pq.write_table(pa.table({"user_id": [1]}), tmp_path / "scores" / "2024-05-01" / "part-0.parquet")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(
        SPEC.replace("PARQUET", str(tmp_path / "scores")).replace(
            "sqlite:///DB", "postgresql://nobody:secret@127.0.0.1:1/none"  # nothing listens there
        )
    )
    monkeypatch.setenv("COORD_HOME", str(tmp_path / "home"))
    failed = CliRunner().invoke(build_app(), ["push", "push_scores", "--spec", str(spec), "-p", "2024-05-01"])
    lines = [line for line in failed.output.splitlines() if line.strip()]
    assert failed.exit_code == 1 and len(lines) == 1, failed.output
    assert "PushError: cannot connect to PostgreSQL" in lines[0] and "secret" not in lines[0]

    child = [sys.executable, "-m", "coordinator.push.run", "--job", "j", "--state-dir", str(tmp_path)]
    settings = {
        "source": {"parquet": str(tmp_path / "scores" / "2024-05-01")},
        "destination": {"url": "postgresql://nobody:secret@127.0.0.1:1/none", "table": "t"},
        "key": ["user_id"],
    }
    for env, code, expect in (
        (json.dumps(settings), 1, "error: PushError: cannot connect to PostgreSQL"),
        (json.dumps({**settings, "mdoe": "x"}), 2, "is not valid push settings: mdoe: Extra inputs"),
        ("{not json", 2, "is not valid push settings"),
    ):
        run = subprocess.run(
            child, env={**os.environ, SETTINGS_ENV: env}, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == code and run.stderr.count("\n") == 1, run.stderr
        assert expect in run.stderr and "Traceback" not in run.stderr, run.stderr
