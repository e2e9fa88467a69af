"""Standalone cluster mode: the driver is followed, killed and re-attached through the master's REST API.

The master is the stand-in of fake_master.py on 127.0.0.1 (no Spark cluster runs here); the one
spark-submit test submits for real to it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from coordinator.errors import LaunchError
from coordinator.launchers import process
from coordinator.launchers.base import Handle
from coordinator.launchers.spark import SparkLauncher, spark_submit_path
from coordinator.launchers.spark_master import StandaloneMaster, rest_url_for
from coordinator.settings import Settings
from tests.spark.conftest import SPARK_CONF, run_context
from tests.spark.fake_master import fake_master

SID = "driver-20260310115001-0007"


class QuickLauncher(SparkLauncher):
    status_poll_s = 0.05
    status_patience_s = 60.0


def submitted_handle(workdir: Path, rest_url: str, sid: str = SID) -> Handle:
    """The handle of a spark-submit client that already handed `sid` to the master and exited 0."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / process.LOG_NAME).write_text(
        f"26/03/10 11:50:01 INFO RestSubmissionClient: Submission successfully created as {sid}. "
        "Polling submission state...\n")
    (workdir / process.EXIT_NAME).write_text("0\n")
    done = subprocess.Popen(["true"])
    done.wait()
    return Handle("spark", {"pid": done.pid, "start_time": "0", "workdir": str(workdir), "argv": [],
                            "started_at": time.time(), "deploy_mode": "cluster", "rest_url": rest_url})


def test_rest_url_for_masters() -> None:
    assert rest_url_for("spark://m1:7077") == "http://m1:6066"
    assert rest_url_for("spark://m1:6066,m2:6066") == "http://m1:6066"
    assert rest_url_for("spark://10.0.0.5") == "http://10.0.0.5:6066"
    assert rest_url_for("yarn") is None and rest_url_for("local[2]") is None


def test_status_kill_and_unreachable_master() -> None:
    with fake_master() as (url, state):
        state.states[SID] = ["RUNNING"]
        master = StandaloneMaster(url)
        status = master.status(SID)
        assert status.state == "RUNNING" and status.running and status.worker == "127.0.0.1:7078"
        assert master.kill(SID) and state.kills == [SID]
        assert master.status(SID).state == "KILLED"
        with pytest.raises(LaunchError, match="does not know submission"):
            master.status("driver-20260310115001-9999")
    with pytest.raises(LaunchError, match="failed GET"):
        StandaloneMaster(url, timeout_s=2).status(SID)


def test_driver_is_followed_and_reattached_after_a_restart(tmp_path: Path) -> None:
    with fake_master() as (url, state):
        state.states[SID] = ["SUBMITTED", "RUNNING", "RUNNING", "FINISHED"]
        handle = submitted_handle(tmp_path / "run", url)
        ctx = run_context(tmp_path / "run", "etl", "2026-03-10", {}, [], (), timeout_s=30)
        restarted = QuickLauncher(Settings())          # a new instance: only the stored handle is known
        assert restarted.is_alive(handle)               # the submit client is gone, the driver is not
        result = restarted.wait(handle, ctx)
        assert result.succeeded, result.error
        assert result.details["submission_id"] == SID and result.details["driver_state"] == "FINISHED"
        assert not restarted.is_alive(handle)
        assert state.created == []                      # nothing was submitted again


def test_failed_driver_and_timeout(tmp_path: Path) -> None:
    with fake_master() as (url, state):
        state.states[SID] = ["RUNNING", "FAILED"]
        ctx = run_context(tmp_path / "a", "etl", "2026-03-10", {}, [], (), timeout_s=30)
        failed = QuickLauncher(Settings()).wait(submitted_handle(tmp_path / "a", url), ctx)
        assert not failed.succeeded
        assert failed.error == f"driver {SID} ended FAILED: Exception from the cluster: " \
                               "java.lang.IllegalStateException: boom"

        other = "driver-20260310115001-0008"
        state.states[other] = ["RUNNING"]
        ctx = run_context(tmp_path / "b", "etl", "2026-03-10", {}, [], (), timeout_s=0.5)
        timed_out = QuickLauncher(Settings()).wait(submitted_handle(tmp_path / "b", url, other), ctx)
        assert not timed_out.succeeded and timed_out.details["timed_out"]
        assert state.kills == [other]


def test_a_silent_master_is_not_a_reason_to_launch_again(tmp_path: Path) -> None:
    with fake_master() as (url, state):
        state.states[SID] = ["RUNNING", "FINISHED"]
        state.unavailable = 5                            # a blip: five 503s, then answers again
        handle = submitted_handle(tmp_path / "run", url)
        ctx = run_context(tmp_path / "run", "etl", "2026-03-10", {}, [], (), timeout_s=30)
        launcher = QuickLauncher(Settings())
        assert launcher.is_alive(handle)                 # unknown → alive (re-attach, do not relaunch)
        assert launcher.wait(handle, ctx).succeeded
        assert state.unavailable == 0
    launcher.status_patience_s = 0.5
    with pytest.raises(LaunchError, match="failed GET"):  # gone for longer than the patience
        launcher.wait(handle, ctx)
    assert launcher.is_alive(handle)


@pytest.mark.spark
def test_spark_submit_hands_the_driver_to_the_master(tmp_path: Path, spark_settings: Settings) -> None:
    """A real spark-submit in cluster mode against the stand-in master; then followed over REST."""
    app = next((Path(spark_submit_path(None)).parents[1] / "jars").glob("spark-launcher_*.jar"))
    with fake_master(["RUNNING", "FINISHED"]) as (url, state):
        master = url.replace("http://", "spark://")
        ctx = run_context(tmp_path / "run", "etl", "2026-03-10",
                          {"application": str(app), "main_class": "org.example.Etl", "deploy_mode": "cluster",
                           "master": master, "conf": SPARK_CONF, "args": ["--mode", "full"]},
                          [("raw.users", "2026-03-10", "/lake/users/date=2026-03-10")], ("reporting.x",),
                          timeout_s=120)
        launcher = QuickLauncher(spark_settings)
        handle = launcher.start(ctx)
        result = launcher.wait(handle, ctx)
        assert result.succeeded, (result.error, Path(result.log_path).read_text()[-3000:])
        (created,) = state.created
        assert created["mainClass"] == "org.example.Etl"
        assert created["appArgs"] == ["--partition", "2026-03-10",
                                      "--input", "raw.users=/lake/users/date=2026-03-10",
                                      "--output", "reporting.x=", "--mode", "full"]
        assert created["sparkProperties"]["spark.coord.resultFile"] == str(tmp_path / "run" / "result.jsonl")
        assert result.details["submission_id"] == "driver-20260310000000-0000"
