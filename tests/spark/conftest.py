"""Fixtures for the spark job kind: coordinator settings for a small local Spark, raw data, run contexts."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from coordinator.launchers.base import InputRef, RunContext
from coordinator.settings import Settings
from tests.conftest import missing

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
