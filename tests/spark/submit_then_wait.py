"""A coordinator stand-in process for the re-attach test: submits one cluster-mode run, then waits.

`python -m tests.spark.submit_then_wait REQUEST.json` starts the run with the real SparkLauncher,
writes the handle (what the store keeps) to the request's `handle_file`, and follows the driver
until the test SIGKILLs this process; a fresh launcher then re-attaches from the handle alone.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from coordinator.launchers.base import RunContext
from coordinator.launchers.spark import SparkLauncher
from coordinator.settings import Settings


def main(request_file: str) -> None:
    request = json.loads(Path(request_file).read_text())
    ctx = RunContext(run_id=request["run_id"], job=request["job"], partition=request["partition"], attempt=1,
                     settings=request["settings"], inputs=(), outputs=tuple(request["outputs"]),
                     workdir=Path(request["workdir"]), timeout_s=request["timeout_s"])
    launcher = SparkLauncher(Settings(home=Path(request["home"]), spark_conf=request["spark_conf"]))
    handle = launcher.start(ctx)
    partial = Path(request["handle_file"] + ".part")
    partial.write_text(json.dumps(handle.data))
    os.replace(partial, request["handle_file"])
    launcher.wait(handle, ctx)


if __name__ == "__main__":
    main(sys.argv[1])
