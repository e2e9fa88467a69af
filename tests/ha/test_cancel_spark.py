"""`coord cancel` on a Spark job (local mode, spark-submit of a PySpark application) beside a
running `coord run` on one embedded home: the application's whole process group — spark-submit,
its driver JVM, the Python driver — is stopped, the run is `cancelled`, and downstream is held."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.ha.test_operations import DAYS, Home
from tests.spark.conftest import SPARK_CONF

pytestmark = pytest.mark.spark

SLEEPY = """
import sys, time
from pathlib import Path
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
spark.range(10).count()  # the driver JVM and the session are up
Path(sys.argv[sys.argv.index("--marker") + 1]).write_text("started")
time.sleep(300)
"""


def spec_text(tmp: Path) -> str:
    return f"""
datasets: {{raw.a: {{partitioning: daily}}}}
jobs:
  crunch:
    kind: spark
    inputs: [raw.a]
    outputs: [mid]
    settings: {{application: sleepy.py, args: [--marker, "{tmp}/started-{{partition}}"]}}
  after: {{kind: command, inputs: [mid], outputs: [out], settings: {{command: [sh, -c, 'true']}}}}
"""


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of one process group."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


@pytest.fixture
def spark_home(tmp_path: Path):
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing("Spark", "no Java runtime")
    home = Home(tmp_path, sleep=0)
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    home.spec.write_text(spec_text(tmp_path))
    home.env |= {"COORD_SPARK_MASTER": "local[1]", "COORD_SPARK_CONF": json.dumps(SPARK_CONF)}
    yield home
    for run in home.runs():  # no application outlives the test
        if run.handle is not None:
            for pid in group_members(int(run.handle.data["pid"])):
                os.kill(pid, signal.SIGKILL)
    home.close()


def test_cancel_stops_a_spark_application_s_process_group_and_downstream_waits(spark_home: Home):
    home = spark_home
    service = home.serve()
    home.publish(DAYS[:1])
    marker = home.tmp / f"started-{DAYS[0]}"
    home.until(marker.exists, timeout=180)  # the application runs: its session is up
    [run] = home.runs()
    assert (run.job, run.state) == ("crunch", "running")
    pgid = int(run.handle.data["pid"])
    members = group_members(pgid)
    assert len(members) >= 2, members  # spark-submit's JVM and the Python driver at least
    cancel = home.coord("cancel", run.run_id)
    out = cancel.output
    assert cancel.returncode == 0 and "cancelled" in out, out
    assert group_members(pgid) == []  # every process of the application is gone
    time.sleep(3)  # the service saw its job end: it records nothing over the cancel
    [after] = home.runs()  # and `after` (downstream) was never created
    assert (after.state, after.error) == ("cancelled", "cancelled by an operator")
    assert service.poll() is None
