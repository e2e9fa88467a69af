"""The coordinator's side of the process spawner (launchers/spawner.py): one per coordinator
process, started on first use, asked over a pipe to start each job.

`spawner()` gives the process's spawner, or None where it cannot run (then launchers/process.py
starts the job under its `/bin/sh` wrapper, as before). A spawner that died is found by the
launch that cannot ask it (a broken pipe, no answer) and stopped; that launch falls back to the
wrapper, and the next call starts another spawner.
"""

from __future__ import annotations

import collections
import logging
import marshal
import os
import select
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from coordinator.rundirs import EXIT_NAME, LOG_NAME, STALE_NAMES

log = logging.getLogger("coordinator.launchers")
SCRIPT = Path(__file__).with_name("spawner.py")
ANSWER_MS = 10_000  # a spawn answers in a millisecond; one that does not in this long is stuck


class SpawnerGone(Exception):
    """The spawner died, or did not answer: this launch uses the shell wrapper."""


def _environ() -> Mapping[object, object]:
    """os.environ's own mapping (of bytes) where it has one: comparing that is done in C (~1 µs
    here), where reading os.environ decodes every variable (~40 µs on the launch's path)."""
    raw = getattr(os.environ, "_data", None)
    return raw if isinstance(raw, dict) else dict(os.environ)


class Asked:
    """One job's start asked of the spawner; its answer (a pid, or why not) once read."""

    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done, self.value = False, None

    def answered(self, value: object) -> None:
        self.value, self.done = value, True


class Spawner:
    """One spawner process and the pipes to it; `ask` and `answer` may be called from any thread,
    several asks before their answers."""

    def __init__(self) -> None:
        # the base every job's environment is told against: the spawner keeps it
        self._base, self._base_raw = dict(os.environ), dict(_environ())
        self._proc = subprocess.Popen(
            [sys.executable, "-S", str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # not this process's stderr: a caller reading that to its end must not wait for our jobs
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives this process and its signals, as its jobs do
            env=self._base,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._to, self._from = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        self._answered = select.poll()
        self._answered.register(self._from, select.POLLIN)
        self.pid, self.owner = self._proc.pid, os.getpid()  # a forked child starts its own
        self._sending, self._reading = threading.Lock(), threading.Lock()
        self._asked: collections.deque[Asked] = collections.deque()
        self._unread = b""  # read from the answers' pipe, not yet taken (guarded by `_reading`)
        try:
            self._send((self._base, LOG_NAME, EXIT_NAME, STALE_NAMES))
        except OSError:
            self.stop()
            raise

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stopped(self) -> bool:
        """Found dead (and stopped) by a launch that could not ask it, or stopped: without a
        system call, which `alive` costs each launch (~25 µs on the launch's path here)."""
        return self._proc.returncode is not None

    def ask(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None, folder: str) -> Asked:
        """Ask for a job to start and return at once (`answer` waits for its pid): the spawner
        makes the attempt's `folder` (or, there already, removes an earlier start's results in
        it), and starts `argv` in `cwd` (None: the folder), its environment this process's with
        `env` over it, its output to the folder's log, its exit code to the folder's file
        (absolute paths). Raises SpawnerGone."""
        env_set, env_unset = self._difference(env)
        request = (list(argv), env_set, env_unset, cwd, folder)
        asked = Asked()
        with self._sending:
            self._asked.append(asked)  # before the answer can come: answers come in this order
            try:
                self._send(request)
            except OSError as exc:  # a broken pipe: it died
                self.stop()
                raise SpawnerGone(str(exc) or type(exc).__name__) from exc
        return asked

    def answer(self, asked: Asked) -> int:
        """The pid of the job `ask` asked for. Raises OSError as the spawn's own (a missing
        program or working folder), SpawnerGone when the spawner died or did not answer."""
        with self._reading:  # whoever reads an answer hands it to its asker
            while not asked.done:
                try:
                    answer = self._answer()
                except (OSError, ValueError, EOFError) as exc:  # a broken pipe: it died
                    self.stop()
                    raise SpawnerGone(str(exc) or type(exc).__name__) from exc
                self._asked.popleft().answered(answer)
        if isinstance(asked.value, str):
            raise OSError(asked.value)
        return int(asked.value)  # type: ignore[call-overload]

    def _difference(self, env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """What a job's environment (this process's, `env` over it) sets and unsets against the
        spawner's base: only `env`, unless this process's own changed since the spawner started."""
        if _environ() == self._base_raw:
            return dict(env), []
        now = {**os.environ, **env}
        unset = [k for k in self._base if k not in now]
        return {k: v for k, v in now.items() if self._base.get(k) != v}, unset

    def _send(self, value: object) -> None:
        body = marshal.dumps(value)
        data = len(body).to_bytes(4, "little") + body
        while data:
            data = data[os.write(self._to, data) :]

    def _answer(self) -> object:
        """The next answer; what was read past it (the next answers) is kept for the next call."""
        data = self._unread
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "little"):
            if not self._answered.poll(ANSWER_MS):
                raise EOFError("no answer")
            chunk = os.read(self._from, 1 << 16)
            if not chunk:
                raise EOFError("no answer")
            data += chunk
        size = 4 + int.from_bytes(data[:4], "little")
        self._unread = data[size:]
        return marshal.loads(data[4:size])

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
        if _spawner is not None and _spawner.stopped():
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
