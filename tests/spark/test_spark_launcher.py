"""The spark launcher with real spark-submit in local mode (no engine): each test is one submit."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from coordinator.launchers.base import Handle
from coordinator.launchers.spark import SparkLauncher
from coordinator.settings import Settings
from jobs.sample_data import write_hourly_counts, write_raw_day
from tests.spark.conftest import run_context

pytestmark = pytest.mark.spark

DAY = date(2026, 3, 10)
FEATURES = ["user_id", "feature_date", "country", "plan", "tenure_days", "days_since_last_visit",
            "sessions_7d", "sessions_30d", "page_views_7d", "purchases_30d", "revenue_30d",
            "avg_session_minutes",
            "support_tickets_90d"]


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_features_job_reports_rows_and_columns(tmp_path: Path, spark_settings: Settings) -> None:
    raw = tmp_path / "lake"
    for back in (2, 0):                         # two days of history: the 7-day window spans both
        paths = write_raw_day(raw, DAY - timedelta(days=back), n_users=60, seed=3)
    out_template = str(tmp_path / "warehouse" / "user_features" / "date={partition}")
    ctx = run_context(tmp_path / "run", "user_features", DAY.isoformat(),
                      {"application": "user_features", "output": out_template},
                      [("fivetran.app.users", DAY.isoformat(), str(paths["users"])),
                       ("fivetran.app.events", DAY.isoformat(), str(paths["events"]))],
                      ("reporting.user_features",), timeout_s=300)
    launcher = SparkLauncher(spark_settings)
    handle = launcher.start(ctx)
    assert launcher.is_alive(handle)
    result = launcher.wait(handle, ctx)

    assert result.succeeded, result.error
    (report,) = result.outputs
    location = tmp_path / "warehouse" / "user_features" / f"date={DAY}"
    assert report.dataset == "reporting.user_features" and report.location == str(location)
    table = pq.read_table(location)
    assert report.row_count == table.num_rows == 60
    assert [c.name for c in report.columns] == FEATURES == table.column_names
    types = {c.name: c.type for c in report.columns}
    assert types["user_id"] == "bigint" and types["feature_date"] == "date" and types["country"] == "string"
    assert types["revenue_30d"] == "double" and types["tenure_days"] == "int"
    assert str(result.details["spark_app_id"]).startswith("local-")
    assert result.log_path and "user_features" in Path(result.log_path).read_text()

    # The numbers are right: sessions in the last 7 days, recomputed from the raw events.
    events = pd.concat(pq.read_table(raw / "raw" / "events" / f"date={DAY - timedelta(days=b)}").to_pandas()
                       for b in (2, 0))
    expected = events[events.event_type == "session_start"].groupby("user_id").size()
    got = table.to_pandas().set_index("user_id")
    assert expected.sum() > 0
    assert (got["sessions_7d"] == expected.reindex(got.index, fill_value=0)).all()
    assert (got.loc[got.sessions_7d > 0, "days_since_last_visit"] <= 2).all()


def test_failed_job_error_is_the_real_cause(tmp_path: Path, spark_settings: Settings) -> None:
    paths = write_raw_day(tmp_path / "lake", DAY, n_users=10, seed=3)
    missing_users = tmp_path / "lake" / "raw" / "users" / "date=1999-01-01"
    ctx = run_context(tmp_path / "run", "user_features", DAY.isoformat(),
                      {"application": "jobs.user_features", "output": str(tmp_path / "out" / "{partition}")},
                      [("raw.users", DAY.isoformat(), str(missing_users)),
                       ("raw.events", DAY.isoformat(), str(paths["events"]))],
                      ("reporting.user_features",), timeout_s=300)
    launcher = SparkLauncher(spark_settings)
    result = launcher.wait(launcher.start(ctx), ctx)

    assert not result.succeeded
    assert result.error.startswith("exit code 1: ")
    assert "AnalysisException: [PATH_NOT_FOUND] Path does not exist" in result.error
    assert str(missing_users) in result.error
    assert str(result.details["spark_app_id"]).startswith("local-")   # reported before the failure
    assert result.details["exit_code"] == 1


def test_timeout_stops_the_whole_process_group(tmp_path: Path, spark_settings: Settings) -> None:
    marker = tmp_path / "driver.pid"
    app = tmp_path / "sleeper.py"
    app.write_text("import os, sys, time\n"
                   f"open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
                   "time.sleep(600)\n")
    ctx = run_context(tmp_path / "run", "sleeper", None, {"application": str(app)}, [], (), timeout_s=12)
    launcher = SparkLauncher(spark_settings)
    started = time.monotonic()
    handle = launcher.start(ctx)
    result = launcher.wait(handle, ctx)
    took = time.monotonic() - started

    assert not result.succeeded and result.details.get("timed_out")
    assert result.error == "timed out after 12 s and was stopped"
    assert 12 <= took < 12 + 20
    assert marker.exists(), "the Python driver never started: the test did not test the group stop"
    driver_pid = int(marker.read_text())
    deadline = time.monotonic() + 5
    while (_group_members(int(handle.data["pid"])) or Path(f"/proc/{driver_pid}").exists()) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(int(handle.data["pid"])) == []       # spark-submit's JVM and the driver
    assert not launcher.is_alive(handle)


def test_reattach_after_restart_does_not_launch_again(tmp_path: Path, spark_settings: Settings) -> None:
    """hourly_to_daily over a 24-hour window; the coordinator 'restarts' while it runs."""
    hours = write_hourly_counts(tmp_path / "lake", DAY, n_users=30, seed=5)
    ctx = run_context(tmp_path / "run", "events_daily", DAY.isoformat(),
                      {"application": "hourly_to_daily", "args": ["--expect-partitions", "24"],
                       "output": str(tmp_path / "warehouse" / "events_daily" / "date={partition}")},
                      [("raw.events_hourly", key, str(path)) for key, path in hours.items()],
                      ("reporting.events_daily",), timeout_s=300)
    first = SparkLauncher(spark_settings)
    started = first.start(ctx)
    stored = json.dumps({"kind": started.kind, "data": dict(started.data)})   # as the store keeps it
    del first, started                                                        # the coordinator dies

    loaded = json.loads(stored)
    handle = Handle(loaded["kind"], loaded["data"])
    second = SparkLauncher(spark_settings)                                    # and comes back
    assert second.is_alive(handle)
    result = second.wait(handle, ctx)

    assert result.succeeded, result.error
    log = Path(result.log_path).read_text()
    assert log.count("Submitted application: hourly_to_daily") == 1
    hourly = pd.concat(pq.read_table(p).to_pandas() for p in hours.values())
    expected = hourly.groupby(["user_id", "event_type"])["events"].sum()
    (report,) = result.outputs
    daily = pq.read_table(report.location).to_pandas().set_index(["user_id", "event_type"])
    assert report.row_count == len(daily) == len(expected) > 0
    assert (daily["events"] == expected.reindex(daily.index)).all()
    assert [c.name for c in report.columns] == ["user_id", "event_type", "events", "hours_active"]
    assert report.attributes == {"hourly_partitions": "24"}
    assert daily["hours_active"].min() >= 1 and daily["hours_active"].max() <= 24
