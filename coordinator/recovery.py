"""Finding a run's job again after a coordinator restart, even without a stored handle.

Every job kind runs as a child process started by coordinator/launchers/process.py, which puts
the run's own result file path in the child's environment and records the exit code in the
run's folder. So a run left `starting` (the coordinator died between starting the process and
storing its handle) is found by that environment variable, and a process that ended while the
coordinator was down is recognised by its exit-code file. Only when neither exists was the run
never started, and it is launched — once.

`recover(runs, ...)` is the entry point: given active runs (this instance's own at start-up,
or runs adopted from an instance that died), it decides for each whether to re-attach (a
handle) or to launch again in the same attempt (None), and stores the handles it found.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from coordinator.launchers.base import Handle, Launcher
from coordinator.launchers.process import _proc_start_time, await_exit_file
from coordinator.launchers.result import RESULT_FILE_ENV
from coordinator.rundirs import EXIT_NAME, RESULT_NAME
from coordinator.spec.models import PipelineSpec
from coordinator.store.store import RunRow, StateStore

log = logging.getLogger("coordinator.engine")


def recover(
    runs: Iterable[RunRow],
    spec: PipelineSpec,
    store: StateStore,
    launcher: Callable[[str], Launcher],
    workdir: Callable[[RunRow], Path],
    now: float,
) -> list[tuple[RunRow, Handle | None]]:
    """For each active run (`starting` or `running`) of a job still in the spec: the handle to
    re-attach to, or None to launch it again in the same attempt.

    A stored handle whose process lives (or left its exit code) is waited on; a run whose
    process is gone without a result, or that never got a handle and has no process, is
    launched again — once, since the new handle is stored first thing. A process found without
    a stored handle has its handle stored here, before anything waits on it.
    """
    out: list[tuple[RunRow, Handle | None]] = []
    for run in runs:
        job = spec.jobs.get(run.job)
        if job is None:
            continue
        handle = run.handle
        if handle is not None:
            if not launcher(job.kind).is_alive(handle) and left_no_result(handle):
                handle = None
        else:
            handle = find_process(job.kind, workdir(run))
        log.info(
            "run %s %s[%s]: %s after restart",
            run.run_id,
            run.job,
            run.partition,
            "re-attached" if handle else "re-launched",
        )
        out.append((run, handle))
    found = [(r.run_id, r.attempt, h) for r, h in out if h is not None and r.handle is None]
    if found:
        with store.begin() as tx:
            tx.set_running_many(found, now)
    return out


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
            # the session leader: the job itself, or the wrapper shell that records its exit code
            try:
                if os.getsid(pid) != pid:
                    continue
            except OSError:
                continue
            return Handle(kind, {"pid": pid, "start_time": _proc_start_time(pid), "workdir": str(workdir)})
    if not (workdir / EXIT_NAME).exists():  # a job's spawner writes it a moment after the job ends
        await_exit_file(Handle(kind, {}), workdir / EXIT_NAME)
    if (workdir / EXIT_NAME).exists():
        return ended_handle(kind, workdir)
    return None


def ended_handle(kind: str, workdir: Path) -> Handle:
    """A handle for a process that already ended: waiting on it reads the files it left."""
    return Handle(kind, {"pid": 0, "start_time": None, "workdir": str(workdir)})


def left_no_result(handle: Handle) -> bool:
    """The process behind a stored handle is gone without recording an exit code."""
    workdir = handle.data.get("workdir")
    if not workdir:
        return False
    exit_file = Path(str(workdir)) / EXIT_NAME
    if not exit_file.exists():  # its spawner writes it a moment after the job ends
        await_exit_file(handle, exit_file)
    return not exit_file.exists()
