"""Fixtures for the spark job kind: coordinator settings for a small local Spark, raw data, run contexts."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.launchers.base import InputRef, RunContext
from coordinator.launchers.spark_master import rest_url_for
from coordinator.settings import Settings
from tests.conftest import missing

DRIVER_SOURCE = Path(__file__).parent / "driver" / "CoordTestDriver.java"

# Small and quick JVMs: 2 shared cores, several submits per test session.
SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.memory": "512m",
    "spark.sql.shuffle.partitions": "2",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
}


@pytest.fixture
def spark_settings(tmp_path: Path) -> Settings:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing("Spark", "no Java runtime")
    return Settings(home=tmp_path / "home", spark_master="local[1]", spark_conf=SPARK_CONF)


def run_context(workdir: Path, job: str, partition: str | None, settings: dict,
                inputs: list[tuple[str, str | None, str]], outputs: tuple[str, ...],
                timeout_s: float | None = None, attempt: int = 1) -> RunContext:
    """A RunContext as the engine builds it; inputs are (dataset, partition, location)."""
    return RunContext(
        run_id=uuid.uuid4().hex, job=job, partition=partition, attempt=attempt, settings=settings,
        inputs=tuple(InputRef(dataset=d, partition=p, event_id=uuid.uuid4().hex, location=loc)
                     for d, p, loc in inputs),
        outputs=outputs, workdir=workdir, timeout_s=timeout_s)


# --------------------------------------------------------------------------- the standalone cluster
@dataclass(frozen=True)
class StandaloneCluster:
    master: str      # spark://127.0.0.1:REST_PORT, what a cluster-mode job names as its master
    rest_url: str    # http://127.0.0.1:REST_PORT, where drivers are followed and killed


@pytest.fixture(scope="session")
def standalone_cluster() -> StandaloneCluster:
    """The real standalone master and worker of `scripts/services up spark`, answering its REST API."""
    import httpx

    master = os.environ.get("COORD_TEST_SPARK_MASTER")
    if not master:
        missing("Spark standalone master", "COORD_TEST_SPARK_MASTER is not set")
    rest = rest_url_for(master)
    if rest is None:
        missing("Spark standalone master", f"COORD_TEST_SPARK_MASTER={master} is not a spark:// URL")
    try:  # any answer means the REST server is up; an unknown id is answered 200 with success false
        httpx.get(f"{rest}/v1/submissions/status/driver-none", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        missing("Spark standalone master", f"{rest}: {exc}")
    return StandaloneCluster(master, rest)


@pytest.fixture(scope="session")
def driver_jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/spark/driver/CoordTestDriver.java compiled into a jar: a JVM application a worker runs."""
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar is None:
        missing("A Java compiler", "javac and jar (a JDK) build the cluster tests' driver")
    out = tmp_path_factory.mktemp("driver")
    subprocess.run([javac, "-d", str(out), str(DRIVER_SOURCE)], check=True, capture_output=True)
    subprocess.run([jar, "cf", str(out / "coord-test-driver.jar"), "-C", str(out), "CoordTestDriver.class"],
                   check=True, capture_output=True)
    return out / "coord-test-driver.jar"
