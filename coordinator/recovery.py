"""Finding a run's job again after a coordinator restart, even without a stored handle.

Every job kind runs as a child process started by coordinator/launchers/process.py, which puts
the run's own result file path in the child's environment and records the exit code in the
run's folder. So a run left `starting` (the coordinator died between starting the process and
storing its handle) is found by that environment variable, and a process that ended while the
coordinator was down is recognised by its exit-code file. Only when neither exists was the run
never started, and it is launched — once.
"""

from __future__ import annotations

import os
from pathlib import Path

from coordinator.launchers.base import Handle
from coordinator.launchers.process import EXIT_NAME, RESULT_NAME, _proc_start_time
from coordinator.launchers.result import RESULT_FILE_ENV


def find_process(kind: str, workdir: Path) -> Handle | None:
    """A handle to the live process of this run's folder, or to its finished result, or None."""
    marker = f"{RESULT_FILE_ENV}={workdir / RESULT_NAME}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if marker in env:
            pid = int(entry.name)
            # the session leader is the wrapper shell that records the exit code
            try:
                if os.getsid(pid) != pid:
                    continue
            except OSError:
                continue
            return Handle(kind, {"pid": pid, "start_time": _proc_start_time(pid), "workdir": str(workdir)})
    if (workdir / EXIT_NAME).exists():
        return ended_handle(kind, workdir)
    return None


def ended_handle(kind: str, workdir: Path) -> Handle:
    """A handle for a process that already ended: waiting on it reads the files it left."""
    return Handle(kind, {"pid": 0, "start_time": None, "workdir": str(workdir)})


def left_no_result(handle: Handle) -> bool:
    """The process behind a stored handle is gone without recording an exit code."""
    workdir = handle.data.get("workdir")
    return bool(workdir) and not (Path(str(workdir)) / EXIT_NAME).exists()
