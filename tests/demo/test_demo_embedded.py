"""`coord demo` on the embedded defaults, as a newcomer runs it: local bus, SQLite state, dlt into
DuckDB, dbt-duckdb, Spark local, MLflow in a local SQLite store, a SQLite product database — in a
fresh folder. The whole journey, each step a kind of its own, each started by the step before."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

# Three journeys (the second a no-op, the third one day of changed data): a few minutes on an
# idle 2-core machine; the timeouts leave room for a busy one.
pytestmark = [pytest.mark.spark, pytest.mark.mlflow, pytest.mark.timeout(1500)]

USERS, DAYS = 300, 2
LATEST = "2025-06-03"
JOURNEY = (("load_app", "el"), ("reporting", "dbt"), ("user_features", "spark"),
           ("churn_scores", "score"), ("push_user_scores", "reverse_etl"))


def run_demo(cwd: Path, *args: str, days: int = DAYS) -> dict:
    """`coord demo --json` as a child process with no COORD_ setting from the outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORD_", "MLFLOW_"))}
    env["COORD_SPARK_MASTER"] = "local[2]"
    coord = Path(sys.executable).with_name("coord")
    done = subprocess.run([str(coord), "demo", "--json", "--days", str(days), "--users", str(USERS), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def scores(db: Path) -> dict[tuple[int, str], tuple[float, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select user_id, score_date, churn_probability, model_version from user_scores")
        return {(u, d): (p, v) for u, d, p, v in rows}


def test_the_whole_journey_on_the_embedded_defaults_then_nothing_then_only_the_changed_day(
        tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    assert first["succeeded"], first
    home = tmp_path / ".coord" / "demo"
    assert first["product_db"] == f"sqlite:///{(home / 'product.db').resolve()}"
    # every step ran as its own kind, once per day, and succeeded
    assert [(r["job"], r["kind"], r["partition"]) for r in first["runs"]] == [
        (job, kind, day) for job, kind in JOURNEY for day in ("2025-06-02", LATEST)]
    assert {r["kind"] for r in first["runs"]} == {"el", "dbt", "spark", "score", "reverse_etl"}
    assert all(r["state"] == "succeeded" and r["seconds"] > 0 for r in first["runs"]), first["runs"]
    assert first["runs_launched"] == len(JOURNEY) * DAYS
    assert first["rows_pushed"] == USERS * DAYS

    # each step wrote where the next one read: the warehouse dlt loaded, dbt's Parquet per day
    lake = home / "lake"
    assert (lake / "warehouse.duckdb").is_file()
    for model in ("users", "events"):
        assert (lake / "reporting" / model / f"date={LATEST}" / f"{model}.parquet").is_file()
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

    # the app re-exports its latest day with other data: that day's journey runs again, from the
    # load on, and the push writes exactly the rows whose scores changed; the other day stays
    before = scores(home / "product.db")
    third = run_demo(tmp_path, "--seed", "8", days=1)
    assert third["succeeded"], third
    assert [(r["job"], r["partition"], r["state"]) for r in third["runs"]] == [
        (job, LATEST, "succeeded") for job, _ in JOURNEY]
    assert third["runs_launched"] == len(JOURNEY)
    after = scores(home / "product.db")
    assert after.keys() == before.keys()
    changed = [key for key in after if after[key] != before[key]]
    assert changed and {day for _, day in changed} == {LATEST}
    assert third["rows_pushed"] == len(changed)
