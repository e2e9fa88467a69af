"""Standalone cluster mode on a real cluster: submit, follow, kill and re-attach through the REST API.

The master and its one worker (1 core, 1 GB) are pyspark's own, started by `scripts/services up
spark`; the application is tests/spark/driver/CoordTestDriver.java, a JVM driver the worker runs
(standalone cluster mode runs JVM applications only). Two things a live cluster will not do on
request are injected, every driver state still coming from the real master: a master a few
seconds unreachable, then answering about the same driver (flaky_proxy.py in front of it), and
a spark-submit that printed its submission id but has not exited when the timeout comes (a
process that printed the real driver's id and stays).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.engine import Coordinator
from coordinator.errors import LaunchError
from coordinator.launchers import process
from coordinator.launchers.base import Handle, RunContext
from coordinator.launchers.spark import SparkLauncher
from coordinator.launchers.spark_log import read_tail, submission_id
from coordinator.launchers.spark_master import StandaloneMaster, rest_url_for
from coordinator.settings import Settings
from coordinator.spec import load_spec
from tests.spark.conftest import SPARK_CONF, StandaloneCluster, run_context
from tests.spark.flaky_proxy import flaky_proxy
from tests.spark.test_spark_engine import COORDINATOR, landed, launched_run, publish, published

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


CLUSTER_SPEC = """
datasets:
  raw.users: {partitioning: daily}
  reporting.x: {partitioning: daily}
jobs:
  etl:
    kind: spark
    inputs: [raw.users]
    outputs: [reporting.x]
    timeout_s: 180
    settings:
      application: JAR
      main_class: CoordTestDriver
      deploy_mode: cluster
      master: MASTER
      rest_url: REST
      conf: CONF
      args: [--sleep-s, "6"]
      output: TMP/x/date={partition}
"""


def test_the_coordinator_is_sigkilled_and_its_successor_reattaches(
        tmp_path: Path, driver_jar: Path, standalone_cluster: StandaloneCluster) -> None:
    """SIGKILL the coordinator process while the driver runs on the worker; the restarted
    coordinator follows the same driver through the master (via a proxy that is unreachable for
    a while) and publishes its output, launching nothing again."""
    settings = Settings(home=tmp_path / "home", bus="local", spark_conf=CLUSTER_CONF)
    with flaky_proxy(standalone_cluster.rest_url) as (proxy, faults):
        spec_path = tmp_path / "pipeline.yaml"
        values = {"JAR": str(driver_jar), "MASTER": standalone_cluster.master, "REST": proxy,
                  "CONF": json.dumps(CLUSTER_CONF), "TMP": str(tmp_path)}
        text = CLUSTER_SPEC
        for name, value in values.items():
            text = text.replace(name, value)
        spec_path.write_text(text)
        publish(settings, [landed("raw.users", PARTITION, tmp_path / "lake" / "users")])
        cfg = {"spec": str(spec_path), "settings": {"home": str(settings.home), "bus": "local",
                                                     "spark_conf": CLUSTER_CONF}}
        first = subprocess.Popen([sys.executable, "-c", COORDINATOR, json.dumps(cfg)], cwd=tmp_path)
        master = StandaloneMaster(standalone_cluster.rest_url)
        try:
            sid = driver_of(launched_run(settings, "etl", first).handle)
            wait_for_state(master, sid, "RUNNING")
            assert str(master.status(sid).worker).startswith("127.0.0.1:")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)

        faults.unavailable = 2                             # the master is unreachable for a while
        with Coordinator(load_spec(spec_path), settings) as coord:
            stats = coord.run(until_idle=True, timeout_s=120)
            with coord.store.begin() as tx:
                [after] = tx.list_runs(job="etl")
                attempts = tx.attempts(after.run_id)
        assert faults.unavailable == 0 and faults.forwarded > 0
    assert (stats.launched, stats.succeeded) == (0, 1)      # re-attached, not re-launched
    assert after.state == "succeeded" and [a["attempt"] for a in attempts] == [1]
    details = attempts[0]["details"]
    details = json.loads(details) if isinstance(details, str) else details
    assert details["submission_id"] == sid and details["driver_state"] == "FINISHED"
    log = Path(attempts[0]["log_path"]).read_text()
    assert log.count("Submission successfully created") == 1     # submitted once
    [event] = published(settings)                                  # written by the driver on the worker
    assert (event.dataset, event.partition, event.row_count) == ("reporting.x", PARTITION, 3)
    assert event.location == str(tmp_path / "x" / f"date={PARTITION}")
    assert event.attributes["driver"] == "cluster"
    assert master.status(sid).state == "FINISHED"


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
    # The timeout counts from the launch: it may stop spark-submit itself (slow to start) or
    # the driver it handed over; either way the driver is killed on the master.
    ctx = cluster_run(tmp_path / "timeout", driver_jar, standalone_cluster, "--sleep-s", "120", timeout_s=8)
    run = launcher(tmp_path)
    handle = run.start(ctx)
    sid = driver_of(handle)
    timed_out = run.wait(handle, ctx)
    assert not timed_out.succeeded and timed_out.details["timed_out"]
    assert timed_out.error == "timed out after 8 s and was stopped"
    assert timed_out.details["submission_id"] == sid
    wait_for_state(master, sid, "KILLED")

    ctx = cluster_run(tmp_path / "cancel", driver_jar, standalone_cluster, "--sleep-s", "120")
    handle = run.start(ctx)
    sid = driver_of(handle)
    wait_for_state(master, sid, "RUNNING")
    run.cancel(handle)
    wait_for_state(master, sid, "KILLED")
    assert not run.is_alive(handle)

    # The race the timeout can meet: spark-submit has handed the driver over (its id is in the
    # log) but has not exited yet. Its stand-in here is a process that printed that line and
    # stays; stopping it must not leave the real driver running on the cluster.
    ctx = cluster_run(tmp_path / "race", driver_jar, standalone_cluster, "--sleep-s", "120", timeout_s=1)
    sid = driver_of(run.start(ctx))
    wait_for_state(master, sid, "RUNNING")
    still_submitting = process.start_process("spark", ["sh", "-c", (
        f"echo 'INFO RestSubmissionClient: Submission successfully created as {sid}. Polling submission "
        "state...'; sleep 60")], tmp_path / "race-submit")
    handle = Handle("spark", {**still_submitting.data, "started_at": time.time(), "deploy_mode": "cluster",
                              "rest_url": standalone_cluster.rest_url})
    driver_of(handle)                                    # the line is in the log
    raced = run.wait(handle, ctx)
    assert raced.details["timed_out"] and raced.details["submission_id"] == sid
    wait_for_state(master, sid, "KILLED")
