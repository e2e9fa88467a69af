"""`coord push JOB --partition P`: dry run, then the push, from a spec's reverse_etl job."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from coordinator.cli import build_app

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
