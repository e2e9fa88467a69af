"""Child processes that survive a coordinator restart: start, watch, time out, re-attach.

Every job kind runs as a child process (an executable, spark-submit, or `python -m` of the
project's own scoring/push runners), so one mechanism gives every kind the same guarantees:
- the process is its own session (process group), so a timeout or cancel stops the whole tree;
- its PID and start time are the durable handle: after a restart the engine re-attaches to the
  same process (the start time guards against PID reuse) instead of launching it again;
- its end is seen at once: the waiting thread blocks on a pidfd (Linux), which works for a child
  of ours and for one re-attached after a restart alike; elsewhere it checks every 50 ms;
- its exit code is written to `exit_code` in the run's folder by the job's parent, so a process
  that ends while the coordinator is down still leaves its result behind (only a parent learns
  a process's exit code: without it, an instance that adopts or re-attaches a job could not
  tell success from failure). That parent is the coordinator process's spawner
  (launchers/spawner.py), which makes the attempt's folder and starts the job's own argv with
  posix_spawn — nothing between the coordinator and the job's first statement but one request
  through a pipe (`begin_process`; the answer, the pid, is read by `Starting.handle`, after
  the engine has asked for every start of its turn: coordinator/workers.py). Where it cannot run,
  the job starts under a `/bin/sh` wrapper that writes the code (`cmd; echo $? > exit_code`):
  a shell's start and a fork more, measured in bench/launch.py's run as `shell_wrapper_ms`
  (1-2 ms on this 2-core machine under load). Measured here side by side, loaded (60 launches
  each, alternating): the job's first statement 13.5 ms after `start_process` with the
  spawner, 17.8 ms under the wrapper; the round trip itself is two process switches, so on a
  saturated machine it costs about what the wrapper's exec and fork did;
- stdout+stderr go to `log` in the run's folder; the last error-looking line becomes the error,
  masked (`masked`): a job that prints its password leaves it in its own log, not in the state
  store, the UI, alerts or lineage.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import os
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from coordinator.errors import LaunchError
from coordinator.launchers.base import Handle, Launcher, RunContext, RunResult
from coordinator.launchers.result import RESULT_FILE_ENV, read_results
from coordinator.launchers.spawning import Asked, Spawner, SpawnerGone, spawner
from coordinator.rundirs import (  # re-exported: the folder's files
    EXIT_NAME,
    LOG_NAME,
    RESULT_NAME,
    SIGNAL_SUFFIX,
    STALE_NAMES,
)
from coordinator.secrets import Masker, mask_argv

ERROR_HINTS = ("error", "exception", "traceback", "failed", "fatal")
log = logging.getLogger("coordinator.launchers")


def _proc_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def begin_process(
    kind: str,
    argv: Sequence[str],
    workdir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Starting:
    """Ask for `argv` to start detached in its own session, its environment this process's with
    `env` over it, and return at once: `Starting.handle` waits for the spawner's answer and gives
    the durable handle. The spawner makes the attempt's folder (clearing an earlier start's
    results) and execs the job without this process waiting; where there is no spawner, the
    wrapper's job is started here. Raises LaunchError."""
    job_env = {**(env or {}), RESULT_FILE_ENV: os.path.join(workdir, RESULT_NAME)}  # over this process's
    helper, started_at = spawner(), time.time()
    if helper is not None:
        # paths absolute: the spawner's own working folder is the last job's
        folder = os.path.abspath(cwd) if cwd is not None else None
        try:
            asked = helper.ask(argv, job_env, folder, os.path.abspath(workdir))
            return Starting(kind, argv, workdir, job_env, cwd, started_at, asked=(helper, asked))
        except SpawnerGone as exc:
            log.warning("the process spawner did not answer (%s): this job starts under /bin/sh", exc)
    starting = Starting(kind, argv, workdir, job_env, cwd, started_at)
    starting.wrapped()
    return starting


def start_process(
    kind: str,
    argv: Sequence[str],
    workdir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Handle:
    """Start `argv` detached in its own session; returns the durable handle. Raises LaunchError."""
    return begin_process(kind, argv, workdir, env, cwd).handle()


class Starting:
    """A job whose start was asked for (`begin_process`); `handle()` completes it: the spawner's
    answer (the pid, or why it could not start), then the handle with the job's start time.
    Asking and answering apart lets a turn ask for all its starts before it waits for one."""

    def __init__(
        self,
        kind: str,
        argv: Sequence[str],
        workdir: Path,
        job_env: dict[str, str],
        cwd: Path | None,
        started_at: float,
        asked: tuple[Spawner, Asked] | None = None,
    ) -> None:
        self.kind, self.argv, self.workdir, self.job_env, self.cwd = kind, argv, workdir, job_env, cwd
        self.started_at, self._asked = started_at, asked
        self._pid: int | None = None

    def wrapped(self) -> None:
        """The job started here under the `/bin/sh` wrapper (there is no spawner to ask)."""
        workdir = self.workdir
        try:
            try:  # a new attempt's folder: nothing of an earlier start to clear
                os.mkdir(workdir)
            except FileNotFoundError:
                workdir.mkdir(parents=True, exist_ok=True)
            except FileExistsError:  # the same attempt started again (after a crash): its old results go
                for name in STALE_NAMES:
                    (workdir / name).unlink(missing_ok=True)
            env = {**os.environ, **self.job_env}
            self._pid = _start_wrapped(self.argv, env, self.cwd or workdir, workdir)
        except OSError as exc:
            raise LaunchError(f"cannot start {self.argv[0]!r}: {exc}") from exc

    def handle(self) -> Handle:
        """The durable handle, once the job started. Raises LaunchError."""
        data: dict[str, object] = {}
        if self._pid is None and self._asked is not None:
            helper, asked = self._asked
            try:
                self._pid = helper.answer(asked)
                data["spawner"] = _identity(helper.pid)
            except SpawnerGone as exc:
                log.warning("the process spawner did not answer (%s): this job starts under /bin/sh", exc)
            except OSError as exc:
                raise LaunchError(f"cannot start {self.argv[0]!r}: {exc}") from exc
        if self._pid is None:
            self.wrapped()
        pid = self._pid
        assert pid is not None
        return Handle(
            self.kind,
            {
                "pid": pid,
                "start_time": _proc_start_time(pid),
                "workdir": str(self.workdir),
                "argv": mask_argv(self.argv),  # for display only: the store keeps no --conf password
                "started_at": self.started_at,
                **data,
            },
        )


_identities: dict[int, dict[str, object]] = {}


def _identity(pid: int) -> dict[str, object]:
    """A spawner's pid and start time (a reused pid is not it), read once."""
    if pid not in _identities:
        _identities[pid] = {"pid": pid, "start_time": _proc_start_time(pid)}
    return _identities[pid]


def _start_wrapped(argv: Sequence[str], env: Mapping[str, str], cwd: Path, workdir: Path) -> int:
    """Where there is no spawner: the job under a shell that records its exit code even if nobody
    waits for the process any more."""
    script = f"{shlex.join(argv)}; echo $? > {shlex.quote(str(workdir / EXIT_NAME))}"
    with open(workdir / LOG_NAME, "ab") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return proc.pid


def is_alive(handle: Handle) -> bool:
    pid = int(handle.data["pid"])
    start = _proc_start_time(pid)
    if start is None or start != handle.data.get("start_time"):
        return False
    try:  # reap it if it is our own zombie child
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def terminate(handle: Handle, grace_s: float = 10.0) -> None:
    """Stop the process group: SIGTERM, then SIGKILL after `grace_s`. Quiet if already gone.

    Returns once no process of the group is left running, not only its leader: a job's
    children (spark-submit's JVM, a Python driver) may outlive the leader by a few moments,
    and "cancelled" must mean stopped."""
    if not is_alive(handle):
        return
    pgid = int(handle.data["pid"])
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not is_alive(handle) and not group_running(pgid):
                return
            time.sleep(0.05)


def group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` is still running (zombies, which only wait for their
    parent to reap them, do not count). Read from /proc; where there is none, a signal 0."""
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def last_error_line(log_path: Path, limit_bytes: int = 64_000) -> str | None:
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit_bytes))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if any(h in line.lower() for h in ERROR_HINTS):
            return line.strip()[:2000]
    return next((ln.strip()[:2000] for ln in reversed(lines) if ln.strip()), None)


def _pidfd(handle: Handle) -> int | None:
    """A pidfd of the handle's process (it becomes readable when the process ends); None where the
    system has none. Raises ProcessLookupError when the process is gone already (or its PID now
    names another process: the start time is checked once the pidfd pins the PID)."""
    try:
        fd = os.pidfd_open(int(handle.data["pid"]))
    except (AttributeError, OSError) as exc:  # no pidfd_open (not Linux, old kernel), or gone
        if isinstance(exc, ProcessLookupError):
            raise
        return None
    if _proc_start_time(int(handle.data["pid"])) != handle.data.get("start_time"):
        os.close(fd)
        raise ProcessLookupError(handle.data["pid"])
    return fd


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # our own child leaves a zombie until reaped
        os.waitpid(pid, os.WNOHANG)


def wait_ended(handle: Handle, timeout_s: float | None, poll_s: float = 0.05) -> bool:
    """Block until the process ends (True) or `timeout_s` passes (False). On a pidfd where there
    is one, so the end is seen the moment it happens; else by checking every `poll_s`."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        fd = _pidfd(handle)
    except ProcessLookupError:
        return True
    if fd is None:
        while is_alive(handle):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            time.sleep(poll_s if left is None else min(poll_s, left))
        return True
    try:
        waiter = select.poll()
        waiter.register(fd, select.POLLIN)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            # at most an hour a wait: poll's milliseconds are a C int
            if waiter.poll(3_600_000 if left is None else min(3_600_000, max(1, int(left * 1000) + 1))):
                _reap(int(handle.data["pid"]))
                return True
    finally:
        os.close(fd)


def await_exit_file(handle: Handle, exit_file: Path) -> None:
    """The spawner writes a job's exit code a moment after the job ends (a wrapper shell wrote it
    before it ended itself): wait for it while the spawner lives (up to 5 s), and for a handle that
    does not say whose child the job was (found after a restart) for a tenth of a second."""
    spawner_of = handle.data.get("spawner")
    deadline = time.monotonic() + (5.0 if spawner_of else 0.1)
    often_until = time.monotonic() + 0.02  # it comes within a millisecond or so: look often, then less
    killed = exit_file.with_name(exit_file.name + SIGNAL_SUFFIX)  # the spawner's word for "no code"
    while not exit_file.exists() and not killed.exists() and time.monotonic() < deadline:
        if isinstance(spawner_of, Mapping) and _proc_start_time(int(spawner_of["pid"])) != spawner_of.get(
            "start_time"
        ):
            return  # the spawner is gone: nobody will write it
        time.sleep(0.0002 if time.monotonic() < often_until else 0.005)


def wait_process(handle: Handle, timeout_s: float | None, poll_s: float = 0.05) -> RunResult:
    """Block until the process ends or `timeout_s` passes (then stop it); read its result."""
    workdir = Path(str(handle.data["workdir"]))
    if not wait_ended(handle, timeout_s, poll_s):
        terminate(handle)
        return RunResult(
            False,
            error=f"timed out after {timeout_s:g} s and was stopped",
            log_path=str(workdir / LOG_NAME),
            details={"timed_out": True},
        )
    exit_file = workdir / EXIT_NAME
    if not exit_file.exists():
        await_exit_file(handle, exit_file)
    code_text = exit_file.read_text().strip() if exit_file.exists() else ""
    code = int(code_text) if code_text.lstrip("-").isdigit() else None
    outputs, details = read_results(workdir / RESULT_NAME)
    log_path = str(workdir / LOG_NAME)
    if code == 0:
        return RunResult(True, outputs=outputs, log_path=log_path, details=details)
    reason = last_error_line(workdir / LOG_NAME) or "no output"
    what = f"exit code {code}" if code is not None else "ended without an exit code (killed)"
    return RunResult(
        False,
        error=f"{what}: {reason}",
        outputs=outputs,
        log_path=log_path,
        details={**details, "exit_code": code},
    )


def masked(result: RunResult, *holders: object) -> RunResult:
    """The result with its error, details and outputs' errors masked against the secrets the
    holders (the coordinator's settings, the job's settings and environment) know, and the patterns."""
    masker = Masker.of(*holders)
    outputs = tuple(
        dataclasses.replace(o, error=masker.text(o.error)) if getattr(o, "error", None) else o
        for o in result.outputs
    )
    return dataclasses.replace(
        result, error=masker.text(result.error), details=masker.value(dict(result.details)), outputs=outputs
    )


class ProcessLauncher(Launcher):
    """A launcher whose job is one detached child process started with `begin_process`.

    Subclasses only build the command line in `begin`; waiting, the timeout, cancelling and
    re-attaching are the same for every such kind. The timeout counts from the launch, so a
    run re-attached after a coordinator restart does not get a fresh one.
    """

    quick_start = True  # start is a spawn: asked for on the engine's thread (coordinator/workers.py)

    @abc.abstractmethod
    def begin(self, ctx: RunContext) -> Callable[[], Handle]:
        """The job's `begin_process(...).handle`: the spawn asked for, its answer not awaited."""

    def start(self, ctx: RunContext) -> Handle:
        return self.begin(ctx)()

    def wait(self, handle: Handle, ctx: RunContext) -> RunResult:
        started = float(handle.data.get("started_at") or time.time())
        remaining = None if ctx.timeout_s is None else max(0.0, started + ctx.timeout_s - time.time())
        result = wait_process(handle, remaining)
        if result.details.get("timed_out"):
            return dataclasses.replace(result, error=f"timed out after {ctx.timeout_s:g} s and was stopped")
        return masked(result, self.settings, ctx.settings, ctx.env)

    def cancel(self, handle: Handle) -> None:
        terminate(handle)

    def is_alive(self, handle: Handle) -> bool:
        return is_alive(handle)
