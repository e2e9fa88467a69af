"""The spark kind launched by the coordinator from completion events (embedded bus, SQLite, Spark local)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from coordinator.bus.local import LocalBus
from coordinator.engine import Coordinator
from coordinator.events import CompletionEvent, Status
from coordinator.intake import EventIntake
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.spec import load_spec
from coordinator.store import StateStore
from coordinator.store.rows import RunRow
from jobs.sample_data import write_hourly_counts, write_raw_day
from tests.spark.conftest import SPARK_CONF
from tests.spark.reference import expected_features

pytestmark = pytest.mark.spark

DAY = date(2026, 3, 10)
FEATURES = ["user_id", "feature_date", "country", "plan", "tenure_days", "days_since_last_visit",
            "sessions_7d", "sessions_30d", "page_views_7d", "purchases_30d", "revenue_30d",
            "avg_session_minutes", "support_tickets_90d"]

FEATURES_SPEC = """
datasets:
  fivetran.app.users: {partitioning: daily}
  fivetran.app.events: {partitioning: daily}
  reporting.user_features: {partitioning: daily}
jobs:
  user_features:
    kind: spark
    inputs: [fivetran.app.users, fivetran.app.events]
    outputs: [reporting.user_features]
    retries: {max_attempts: 2, backoff_s: 0.1}
    timeout_s: 600
    settings:
      application: user_features
      output: TMP/warehouse/user_features/date={partition}
"""

HOURLY_SPEC = """
datasets:
  raw.events_hourly: {partitioning: hourly}
  reporting.events_daily: {partitioning: daily}
jobs:
  events_daily:
    kind: spark
    inputs: [{dataset: raw.events_hourly, mapping: {window: hourly}}]
    outputs: [reporting.events_daily]
    timeout_s: 600
    settings:
      application: jobs.hourly_to_daily
      args: [--expect-partitions, "24"]
      output: TMP/warehouse/events_daily/date={partition}
"""


def make_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", bus="local", spark_master="local[1]", spark_conf=SPARK_CONF)


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text.replace("TMP", str(tmp_path)))
    return path


def publish(settings: Settings, events: list[CompletionEvent]) -> None:
    settings.home.mkdir(exist_ok=True)
    with Publisher(LocalBus(settings.home / "bus.db"), settings) as p:
        p.publish_many(events)
        p.flush()


def published(settings: Settings) -> list[CompletionEvent]:
    with EventIntake(LocalBus(settings.home / "bus.db"), settings, group_id="observer") as intake:
        out = []
        while batch := intake.poll(1000, 0.2).events:
            out += batch
        return [e for e in out if e.producer == "coordinator"]


def landed(dataset: str, partition: str, location: Path) -> CompletionEvent:
    return CompletionEvent(dataset=dataset, partition=partition, producer="fivetran", location=str(location))


def test_features_job_runs_when_both_inputs_are_complete(tmp_path: Path, spark_settings: Settings) -> None:
    settings = make_settings(tmp_path)
    lake = tmp_path / "lake"
    for back in (40, 10, 1):                    # history in the 90-, 30- and 7-day windows
        write_raw_day(lake, DAY - timedelta(days=back), n_users=40, seed=11)
    today = write_raw_day(lake, DAY, n_users=40, seed=11)
    tomorrow = write_raw_day(lake, DAY + timedelta(days=1), n_users=40, seed=11)
    publish(settings, [landed("fivetran.app.users", DAY.isoformat(), today["users"]),
                       landed("fivetran.app.users", (DAY + timedelta(days=1)).isoformat(), tomorrow["users"]),
                       landed("fivetran.app.events", DAY.isoformat(), today["events"])])
    # tomorrow's users have landed, its events have not: only today may run
    spec = load_spec(write_spec(tmp_path, FEATURES_SPEC))
    with Coordinator(spec, settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=600)
        with coord.store.begin() as tx:
            runs = tx.list_runs(job="user_features")
            [attempt] = tx.attempts(runs[0].run_id)

    assert (stats.launched, stats.succeeded, stats.failed) == (1, 1, 0)
    assert [(r.partition, r.state) for r in runs] == [(DAY.isoformat(), "succeeded")]
    [event] = published(settings)
    location = tmp_path / "warehouse" / "user_features" / f"date={DAY}"
    table = pq.read_table(location)
    assert (event.dataset, event.partition, event.status) == ("reporting.user_features", DAY.isoformat(),
                                                               Status.SUCCEEDED)
    assert event.location == str(location)
    assert event.row_count == table.num_rows == 40
    assert [c.name for c in event.columns] == FEATURES == table.column_names
    types = {c.name: c.type for c in event.columns}
    assert (types["user_id"], types["feature_date"], types["revenue_30d"]) == ("bigint", "date", "double")
    assert event.attributes["spark_app_id"].startswith("local-")
    assert "Submitted application: user_features" in Path(attempt["log_path"]).read_text()

    # the numbers are right: every feature recomputed in pandas from the raw tables
    events = pd.concat(pq.read_table(lake / "raw" / "events" / f"date={DAY - timedelta(days=b)}").to_pandas()
                       for b in (40, 10, 1, 0))
    users = pq.read_table(today["users"]).to_pandas()
    expected = expected_features(users, events, DAY)
    got = table.to_pandas().set_index("user_id").loc[expected.index]
    exact = [c for c in expected.columns if c not in ("revenue_30d", "avg_session_minutes")]
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_dtype=False)
    for column in ("revenue_30d", "avg_session_minutes"):               # rounded to cents / 0.01 min
        assert (got[column] - expected[column]).abs().max() <= 0.006
    assert expected.sessions_30d.sum() > expected.sessions_7d.sum() > 0   # the windows really differ
    assert (expected.days_since_last_visit > 10).any()                      # last seen 40 days ago


def test_failing_job_is_retried_then_failed_with_the_drivers_error(tmp_path: Path,
                                                                    spark_settings: Settings) -> None:
    settings = make_settings(tmp_path)
    today = write_raw_day(tmp_path / "lake", DAY, n_users=5, seed=11)
    gone = tmp_path / "lake" / "raw" / "events" / "date=2020-01-01"      # the event points at nothing
    publish(settings, [landed("fivetran.app.users", DAY.isoformat(), today["users"]),
                       landed("fivetran.app.events", DAY.isoformat(), gone)])
    with Coordinator(load_spec(write_spec(tmp_path, FEATURES_SPEC)), settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=600)
        with coord.store.begin() as tx:
            [run] = tx.list_runs(job="user_features")
            attempts = tx.attempts(run.run_id)

    assert (stats.launched, stats.retried, stats.failed, stats.succeeded) == (2, 1, 1, 0)
    assert run.state == "failed" and [a["attempt"] for a in attempts] == [1, 2]
    for error in (run.error, *(a["error"] for a in attempts)):
        assert error.startswith("exit code 1: pyspark.errors.exceptions.captured.AnalysisException: "
                                "[PATH_NOT_FOUND] Path does not exist")
        assert str(gone) in error
    assert len({a["log_path"] for a in attempts}) == 2           # one driver log per attempt
    [failed] = published(settings)
    assert failed.status is Status.FAILED and "PATH_NOT_FOUND" in failed.error


def launched_run(settings: Settings, job: str, coordinator: subprocess.Popen,
                 within_s: float = 120) -> RunRow:
    """The job's run once the coordinator process has launched it (running, with its handle)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
            runs = tx.list_runs(job=job)
        if runs and runs[0].state == "running" and runs[0].handle is not None:
            return runs[0]
        assert coordinator.poll() is None, "the coordinator ended before the job ran"
        time.sleep(0.2)
    raise AssertionError(f"{job} was not launched in {within_s} s")


COORDINATOR = """
import json, sys
from coordinator.engine import Coordinator
from coordinator.settings import Settings
from coordinator.spec import load_spec
cfg = json.loads(sys.argv[1])
with Coordinator(load_spec(cfg["spec"]), Settings(**cfg["settings"])) as coord:
    coord.run(until_idle=True, timeout_s=600)
"""


def test_coordinator_killed_while_spark_runs_reattaches_after_restart(tmp_path: Path,
                                                                      spark_settings: Settings) -> None:
    """SIGKILL the coordinator process mid-job; the restarted one waits for the same application."""
    settings = make_settings(tmp_path)
    hours = write_hourly_counts(tmp_path / "lake", DAY, n_users=30, seed=5)
    publish(settings, [landed("raw.events_hourly", key, path) for key, path in hours.items()])
    spec_path = write_spec(tmp_path, HOURLY_SPEC)
    cfg = {"spec": str(spec_path), "settings": {"home": str(settings.home), "bus": "local",
                                                 "spark_master": "local[1]", "spark_conf": SPARK_CONF}}
    first = subprocess.Popen([sys.executable, "-c", COORDINATOR, json.dumps(cfg)], cwd=tmp_path)
    try:
        run = launched_run(settings, "events_daily", first)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    spark_pid = int(run.handle.data["pid"])
    assert os.path.exists(f"/proc/{spark_pid}"), "spark-submit must outlive the coordinator"

    with Coordinator(load_spec(spec_path), settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=600)
        with coord.store.begin() as tx:
            [after] = tx.list_runs(job="events_daily")
            attempts = tx.attempts(after.run_id)

    assert (stats.launched, stats.succeeded) == (0, 1)                  # re-attached, not re-launched
    assert after.state == "succeeded" and [a["attempt"] for a in attempts] == [1]
    log = Path(attempts[0]["log_path"]).read_text()
    assert log.count("Submitted application: hourly_to_daily") == 1
    [event] = published(settings)
    hourly = pd.concat(pq.read_table(p).to_pandas() for p in hours.values())
    expected = hourly.groupby(["user_id", "event_type"])["events"].sum()
    daily = pq.read_table(event.location).to_pandas().set_index(["user_id", "event_type"])
    assert (event.dataset, event.partition) == ("reporting.events_daily", DAY.isoformat())
    assert event.row_count == len(daily) == len(expected) > 0
    assert (daily["events"] == expected.reindex(daily.index)).all()
    assert event.attributes["hourly_partitions"] == "24"
    assert [c.name for c in event.columns] == ["user_id", "event_type", "events", "hours_active"]
