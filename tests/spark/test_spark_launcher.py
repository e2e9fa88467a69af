"""The spark launcher with a real spark-submit in local mode, without the engine.

Success, failure with retries and re-attaching after a restart are tested through the engine
(test_spark_engine.py); each spark-submit costs seconds of JVM start-up, so none is repeated here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coordinator.launchers.spark import SparkLauncher
from coordinator.settings import Settings
from tests.spark.conftest import run_context

pytestmark = pytest.mark.spark


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


def test_timeout_stops_the_whole_process_group(tmp_path: Path, spark_settings: Settings) -> None:
    marker = tmp_path / "driver.pid"
    app = tmp_path / "sleeper.py"
    app.write_text("import os, sys, time\n"
                   f"open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
                   "time.sleep(600)\n")
    ctx = run_context(tmp_path / "run", "sleeper", None, {"application": str(app)}, [], (), timeout_s=4)
    launcher = SparkLauncher(spark_settings)
    started = time.monotonic()
    handle = launcher.start(ctx)
    # Let the Python driver start under spark-submit's JVM (slow on a busy machine), so the stop
    # is proven on the whole tree; the timeout counts from the launch, as after a re-attach.
    while not marker.exists() and time.monotonic() - started < 180:
        assert launcher.is_alive(handle), Path(tmp_path / "run" / "log").read_text()[-2000:]
        time.sleep(0.1)
    driver_pid = int(marker.read_text())
    assert Path(f"/proc/{driver_pid}").exists()
    waited = time.monotonic()
    result = launcher.wait(handle, ctx)

    assert not result.succeeded and result.details.get("timed_out")
    assert result.error == "timed out after 4 s and was stopped"
    assert time.monotonic() - started >= 4 and time.monotonic() - waited < 4 + 15
    deadline = time.monotonic() + 5
    while (_group_members(int(handle.data["pid"])) or Path(f"/proc/{driver_pid}").exists()) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(int(handle.data["pid"])) == []       # spark-submit's JVM and the driver
    assert not Path(f"/proc/{driver_pid}").exists()
    assert not launcher.is_alive(handle)
