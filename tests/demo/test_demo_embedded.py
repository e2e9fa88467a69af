"""`coord demo` on the embedded defaults, as a newcomer runs it: local bus, SQLite state, Spark
local, MLflow in a local SQLite store, a SQLite product database — in a fresh folder."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

# Two journeys (the second a no-op): about two minutes on an idle 2-core machine; the timeouts
# leave room for a busy one.
pytestmark = [pytest.mark.spark, pytest.mark.mlflow, pytest.mark.timeout(1200)]

USERS, DAYS = 300, 2
LATEST = "2025-06-03"


def run_demo(cwd: Path, *args: str) -> dict:
    """`coord demo --json` as a child process with no COORD_ setting from the outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORD_", "MLFLOW_"))}
    env["COORD_SPARK_MASTER"] = "local[2]"
    coord = Path(sys.executable).with_name("coord")
    done = subprocess.run([str(coord), "demo", "--json", "--days", str(DAYS), "--users", str(USERS), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def test_demo_scores_every_user_once_and_a_second_run_pushes_nothing(tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    assert first["succeeded"], first
    home = tmp_path / ".coord" / "demo"
    assert first["product_db"] == f"sqlite:///{(home / 'product.db').resolve()}"
    assert {(r["job"], r["partition"]) for r in first["runs"]} == {
        (job, day) for job in ("user_features", "churn_scores", "push_user_scores")
        for day in ("2025-06-02", LATEST)}
    assert all(r["state"] == "succeeded" and r["seconds"] > 0 for r in first["runs"])
    assert first["runs_launched"] == 3 * DAYS
    assert first["rows_pushed"] == USERS * DAYS

    with sqlite3.connect(home / "product.db") as db:
        rows, users = db.execute("select count(*), count(distinct user_id) from user_scores "
                                 "where score_date = ?", (LATEST,)).fetchone()
        total = db.execute("select count(*) from user_scores").fetchone()[0]
    assert rows == users == USERS
    assert total == USERS * DAYS

    second = run_demo(tmp_path)
    assert second["succeeded"], second
    assert second["runs_launched"] == 0
    assert second["rows_pushed"] == 0
    assert second["rows_in_table"] == total
    assert [r["seconds"] for r in second["runs"]] == [r["seconds"] for r in first["runs"]]   # nothing re-ran
