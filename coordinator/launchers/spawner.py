"""The process spawner: a small process of the coordinator's that starts jobs and keeps their exit codes.

Only a process's parent learns its exit code, and a job must outlive the coordinator that started
it (an instance that adopts or re-attaches it must still learn whether it succeeded). A `/bin/sh`
wrapper per job kept the code (`cmd; echo $? > exit_code`), at the price of a shell's start and
a fork between the coordinator and every job's first statement (bench/launch.py measures it,
`shell_wrapper_ms`: 0.5 ms on a quiet machine, 1-2.5 ms on a busy one). Instead, one spawner per
coordinator process is the parent of the jobs: it starts each with posix_spawn (vfork) straight
into the job's own argv, waits for it, and writes its exit code into the run folder's
`exit_code` (for a job killed by a signal, only the signal, beside it: see `_reap`) — also once
the coordinator is gone, since the spawner lives in a session of its own and leaves only when
the coordinator has closed its pipe and its last job has ended.

This file runs as a script under `python -S` (the standard library only, no site: it starts in
a few milliseconds). Both ends are the same interpreter, so they speak marshal, each message
framed by its length (4 bytes, little-endian) on stdin and stdout: first what holds for every
job, kept here: the environment the coordinator had when it started the spawner (the base) and
the names of an attempt folder's files (log, exit code, an earlier start's results), then one
request a job,
    (argv, env_set, env_unset, cwd, folder)  →  pid (an int) | error (a str)
where the job's environment is the base with `env_set` over it and `env_unset` taken out, so a
request carries only what differs from the base (a job's own variables), not the whole
environment; `folder` is the attempt's (absolute), `cwd` the job's working folder (None: the
attempt's). The coordinator's side is launchers/spawning.py.
"""

import contextlib
import marshal
import os
import shutil
import signal
import threading

# Python ignores SIGPIPE and SIGXFSZ, and a job would inherit that: as subprocess does
# (restore_signals), the job gets them back at their defaults, and no signal blocked
_DEFAULTED = [getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)]
_lock = threading.Lock()  # a child is registered before the reaper may pop it
_exits: dict[int, str] = {}
_children = threading.Condition(_lock)


def _write_exit(path: str, text: str) -> None:
    staging = f"{path}.{os.getpid()}"
    try:
        with open(staging, "w") as f:
            f.write(f"{text}\n")
        os.replace(staging, path)  # whole or not at all, for a reader polling for it
    except OSError:
        pass


def _reap() -> None:
    while True:
        with _children:
            while not _exits:
                _children.wait()
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            continue
        if not os.WIFEXITED(status) and not os.WIFSIGNALED(status):
            continue  # stopped or continued: not an end
        with _lock:
            path = _exits.get(pid)
        if path is not None and os.WIFEXITED(status):
            _write_exit(path, str(os.WEXITSTATUS(status)))
        elif path is not None:
            # A job killed by a signal leaves no code, as under the wrapper shell, which a kill of
            # the job's group (a cancel, a timeout, a machine going down) took along: its run is
            # "killed", or "lost" to an instance that adopts it. Only that it ended, and how.
            _write_exit(f"{path}.signal", str(os.WTERMSIG(status)))
        with _children:  # written: a spawner whose coordinator is gone may leave once none is left
            _exits.pop(pid, None)
            _children.notify_all()


def _folder(path: str, stale: tuple) -> None:
    """The attempt's folder: new (its run's too, for a first attempt), or an earlier start's,
    whose results (the `stale` names) go."""
    try:
        os.mkdir(path)
    except FileNotFoundError:  # a first attempt: its run's folder is new too
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkdir(path)
    except FileExistsError:  # the same attempt started again (after a crash)
        for name in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))


def _spawn(setup: tuple, request: tuple) -> int:
    base, log_name, exit_name, stale = setup
    argv, env_set, env_unset, cwd, folder = request
    _folder(folder, stale)
    log_path, exit_path, cwd = os.path.join(folder, log_name), os.path.join(folder, exit_name), cwd or folder
    env = {**base, **env_set}
    for name in env_unset:
        env.pop(name, None)
    os.chdir(cwd)  # posix_spawn has no working folder of its own; only this thread spawns
    # looked up as a shell in that folder would: a relative path or PATH entry is from there
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if program is None:
        raise FileNotFoundError(f"[Errno 2] No such file or directory: {argv[0]!r}")
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    with _lock:
        pid = os.posix_spawn(
            program, argv, env, file_actions=actions, setsid=True, setsigdef=_DEFAULTED, setsigmask=()
        )
        _exits[pid] = exit_path
        _children.notify_all()
    return pid


def _frames(fd: int):
    """Each message read from `fd` (see the module's docstring), until the coordinator closes it."""
    buffer = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:4], "little"):
            size = 4 + int.from_bytes(buffer[:4], "little")
            yield marshal.loads(buffer[4:size])
            buffer = buffer[size:]


def _answer(value: object) -> None:
    body = marshal.dumps(value)
    data = len(body).to_bytes(4, "little") + body
    while data:
        data = data[os.write(1, data) :]


def main() -> None:
    threading.Thread(target=_reap, daemon=True).start()
    requests = _frames(0)
    setup = next(requests, None)
    for request in requests:  # until the coordinator closes its end
        try:
            answer: object = _spawn(setup, request)
        except Exception as exc:  # the coordinator raises it as a LaunchError
            answer = str(exc) or type(exc).__name__
        try:
            _answer(answer)
        except OSError:  # the coordinator died after asking: the job it asked for runs on
            break
    with _children:  # the coordinator is gone: keep the running jobs' exit codes, then leave
        while _exits:
            _children.wait()


if __name__ == "__main__":
    main()
