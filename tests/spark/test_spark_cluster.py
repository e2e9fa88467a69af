"""Standalone cluster mode on a real cluster: submit, follow, kill and re-attach through the REST API.

The master and its one worker (1 core, 1 GB) are pyspark's own, started by `scripts/services up
spark`; the application is tests/spark/driver/CoordTestDriver.java, a JVM driver the worker runs
(standalone cluster mode runs JVM applications only). The one fault a live master will not
produce on request — a few seconds unreachable, then answering about the same driver — is
injected by flaky_proxy.py in front of it; every driver state comes from the real master.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.errors import LaunchError
from coordinator.launchers import process
from coordinator.launchers.base import Handle, RunContext
from coordinator.launchers.spark import SparkLauncher
from coordinator.launchers.spark_log import read_tail, submission_id
from coordinator.launchers.spark_master import StandaloneMaster, rest_url_for
from coordinator.settings import Settings
from tests.spark.conftest import SPARK_CONF, StandaloneCluster, run_context
from tests.spark.flaky_proxy import flaky_proxy

pytestmark = pytest.mark.spark

# The driver JVM of every submission: small, as the worker has 1 GB.
CLUSTER_CONF = {**SPARK_CONF, "spark.driver.memory": "256m"}
PARTITION = "2026-03-10"


class QuickLauncher(SparkLauncher):
    status_poll_s = 0.5
    status_patience_s = 60.0


def job_settings(jar: Path, cluster: StandaloneCluster, *args: str) -> dict[str, object]:
    return {"application": str(jar), "main_class": "CoordTestDriver", "deploy_mode": "cluster",
            "master": cluster.master, "conf": CLUSTER_CONF, "args": list(args)}


def cluster_run(tmp_path: Path, jar: Path, cluster: StandaloneCluster, *args: str,
                timeout_s: float = 120) -> RunContext:
    return run_context(tmp_path / "run", "etl", PARTITION, job_settings(jar, cluster, *args),
                       [("raw.users", PARTITION, "/lake/users/date=2026-03-10")], ("reporting.x",),
                       timeout_s=timeout_s)


def launcher(tmp_path: Path) -> QuickLauncher:
    return QuickLauncher(Settings(home=tmp_path / "home", spark_conf=CLUSTER_CONF))


def driver_of(handle: Handle, within_s: float = 60) -> str:
    """The submission id spark-submit printed, once it has."""
    log = Path(str(handle.data["workdir"])) / process.LOG_NAME
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        sid = submission_id(read_tail(log)) if log.exists() else None
        if sid:
            return sid
        time.sleep(0.2)
    raise AssertionError(f"spark-submit printed no submission id: {read_tail(log) if log.exists() else ''}")


def wait_for_state(master: StandaloneMaster, sid: str, state: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    seen = None
    while time.monotonic() < deadline:
        seen = master.status(sid).state
        if seen == state:
            return
        time.sleep(0.3)
    raise AssertionError(f"driver {sid} is {seen}, not {state}, after {within_s} s")


def test_rest_url_for_masters() -> None:
    assert rest_url_for("spark://m1:7077") == "http://m1:6066"
    assert rest_url_for("spark://m1:6066,m2:6066") == "http://m1:6066"
    assert rest_url_for("spark://10.0.0.5") == "http://10.0.0.5:6066"
    assert rest_url_for("yarn") is None and rest_url_for("local[2]") is None


def test_submit_follow_and_reattach_after_a_sigkill(tmp_path: Path, driver_jar: Path,
                                                    standalone_cluster: StandaloneCluster) -> None:
    """The launching process is SIGKILLed while it follows the driver; a new one re-attaches."""
    ctx = cluster_run(tmp_path, driver_jar, standalone_cluster, "--sleep-s", "6")
    handle_file = tmp_path / "handle.json"
    request = {"run_id": ctx.run_id, "job": ctx.job, "partition": ctx.partition, "settings": ctx.settings,
               "outputs": list(ctx.outputs), "workdir": str(ctx.workdir), "timeout_s": ctx.timeout_s,
               "home": str(tmp_path / "home"), "spark_conf": CLUSTER_CONF, "handle_file": str(handle_file)}
    (tmp_path / "request.json").write_text(json.dumps(request))
    root = Path(__file__).parents[2]
    first = subprocess.Popen([sys.executable, "-m", "tests.spark.submit_then_wait",
                              str(tmp_path / "request.json")],
                             cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        deadline = time.monotonic() + 60
        while not handle_file.exists():
            assert first.poll() is None, f"the launching process exited {first.returncode}"
            assert time.monotonic() < deadline, "no handle after 60 s"
            time.sleep(0.2)
        handle = Handle("spark", json.loads(handle_file.read_text()))   # what the store keeps
        sid = driver_of(handle)
        master = StandaloneMaster(standalone_cluster.rest_url)
        wait_for_state(master, sid, "RUNNING")
        status = master.status(sid)
        assert status.worker and status.worker.startswith("127.0.0.1:")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    restarted = launcher(tmp_path)                      # a new instance: only the stored handle is known
    assert restarted.is_alive(handle)                   # the submitting process is gone, the driver is not
    with flaky_proxy(standalone_cluster.rest_url) as (proxy, faults):
        faults.unavailable = 4                          # the master is unreachable for a while, then answers
        result = restarted.wait(Handle("spark", {**handle.data, "rest_url": proxy}), ctx)
        assert faults.unavailable == 0 and faults.forwarded > 0
    assert result.succeeded, (result.error, Path(result.log_path).read_text()[-3000:])
    assert result.details["submission_id"] == sid and result.details["driver_state"] == "FINISHED"
    (output,) = result.outputs                          # written by the driver on the worker
    assert (output.dataset, output.row_count) == ("reporting.x", 3)
    assert output.attributes["driver"] == "cluster"
    assert not restarted.is_alive(handle)
    log = Path(result.log_path).read_text()
    assert log.count("Submission successfully created") == 1     # nothing was submitted again


def test_a_failed_driver_and_an_unknown_or_unreachable_master(tmp_path: Path, driver_jar: Path,
                                                              standalone_cluster: StandaloneCluster) -> None:
    ctx = cluster_run(tmp_path, driver_jar, standalone_cluster, "--fail", "no input rows")
    run = launcher(tmp_path)
    handle = run.start(ctx)
    result = run.wait(handle, ctx)
    assert not result.succeeded and result.outputs == ()
    sid = result.details["submission_id"]
    assert result.details["driver_state"] == "FAILED"
    assert result.error == f"driver {sid} ended FAILED"

    master = StandaloneMaster(standalone_cluster.rest_url)
    with pytest.raises(LaunchError, match="does not know submission driver-20260310115001-9999"):
        master.status("driver-20260310115001-9999")
    # A master that stops answering: unknown counts as alive (never launch again), and the
    # launcher gives up following only after its patience.
    gone = Handle("spark", {**handle.data, "rest_url": "http://127.0.0.1:9"})    # nothing listens there
    assert run.is_alive(gone)
    run.status_patience_s = 0.5
    with pytest.raises(LaunchError, match="failed GET"):
        run.wait(gone, ctx)


def test_timeout_and_cancel_kill_the_driver_on_the_master(tmp_path: Path, driver_jar: Path,
                                                          standalone_cluster: StandaloneCluster) -> None:
    master = StandaloneMaster(standalone_cluster.rest_url)
    ctx = cluster_run(tmp_path / "timeout", driver_jar, standalone_cluster, "--sleep-s", "120", timeout_s=8)
    run = launcher(tmp_path)
    timed_out = run.wait(run.start(ctx), ctx)
    assert not timed_out.succeeded and timed_out.details["timed_out"]
    assert timed_out.error == "timed out after 8 s and was stopped"
    wait_for_state(master, timed_out.details["submission_id"], "KILLED")

    ctx = cluster_run(tmp_path / "cancel", driver_jar, standalone_cluster, "--sleep-s", "120")
    handle = run.start(ctx)
    sid = driver_of(handle)
    wait_for_state(master, sid, "RUNNING")
    run.cancel(handle)
    wait_for_state(master, sid, "KILLED")
    assert not run.is_alive(handle)
