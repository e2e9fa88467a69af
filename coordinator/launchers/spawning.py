"""The coordinator's side of the process spawner (launchers/spawner.py): one per coordinator
process, started on first use, asked over a pipe to start each job.

`spawner()` gives the process's spawner, or None where it cannot run (then launchers/process.py
starts the job under its `/bin/sh` wrapper, as before). A spawner that died is replaced at the
next call; the launch that found it dead falls back to the wrapper.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger("coordinator.launchers")
SCRIPT = Path(__file__).with_name("spawner.py")
ANSWER_S = 10.0  # a spawn answers in a millisecond; one that does not in this long is stuck


class SpawnerGone(Exception):
    """The spawner died, or did not answer: this launch uses the shell wrapper."""


class Spawner:
    """One spawner process and the pipes to it; `spawn` may be called from any thread."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-S", str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # not this process's stderr: a caller reading that to its end must not wait for our jobs
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives this process and its signals, as its jobs do
        )
        self.pid, self.owner = self._proc.pid, os.getpid()  # a forked child starts its own
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path, exit_path: Path
    ) -> int:
        """The pid of the job started. Raises OSError as the spawn's own (a missing program or
        working folder), SpawnerGone when the spawner cannot be asked."""
        request = {"argv": list(argv), "env": dict(env), "cwd": str(cwd)}
        request.update(log=str(log_path), exit=str(exit_path))
        line = json.dumps(request).encode() + b"\n"
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with self._lock:
            try:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
                ready, _, _ = select.select([self._proc.stdout], [], [], ANSWER_S)
                answer = self._proc.stdout.readline() if ready else b""
            except (OSError, ValueError) as exc:  # a broken pipe: it died
                raise SpawnerGone(str(exc)) from exc
            if not answer:
                self.stop()
                raise SpawnerGone("no answer")
        reply = json.loads(answer)
        if "error" in reply:
            raise OSError(reply["error"])
        return int(reply["pid"])

    def stop(self) -> None:
        """Kill it (stuck); its running jobs go on, without their exit codes."""
        if self.alive():
            self._proc.kill()
        self._proc.wait()


_spawner: Spawner | None = None
_unavailable = False
_lock = threading.Lock()


def spawner() -> Spawner | None:
    """This process's spawner, started on first use; None where it cannot be started."""
    global _spawner, _unavailable
    with _lock:
        if _spawner is not None and _spawner.owner != os.getpid():
            _spawner = None
        if _spawner is not None and not _spawner.alive():
            log.warning("the process spawner (pid %d) died; starting another", _spawner.pid)
            _spawner = None
        if _spawner is None and not _unavailable:
            if not hasattr(os, "posix_spawn"):
                _unavailable = True
                return None
            try:
                _spawner = Spawner()
            except OSError as exc:
                log.warning("no process spawner (%s): jobs start under a /bin/sh wrapper", exc)
                _unavailable = True
        return _spawner
