"""The `command` kind: substitutions, run environment, result protocol, failure and timeout, and
how soon a job's end is seen."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from coordinator.launchers.base import Handle, InputRef, RunContext
from coordinator.launchers.command import CommandLauncher
from coordinator.launchers.process import _proc_start_time, wait_ended, wait_process
from coordinator.settings import Settings

SCRIPT = """
import json, os, sys
from coordinator.launchers.result import report_output
inputs = json.loads(os.environ["COORD_INPUTS"])
report_output("out.x", row_count=len(inputs), columns=[("id", "long")], location=sys.argv[1])
print("partition", os.environ["COORD_PARTITION"], os.environ["GREETING"])
"""


def ctx(tmp_path: Path, command, timeout_s=None) -> RunContext:
    return RunContext(
        run_id="r1",
        job="j",
        partition="2024-01-02",
        attempt=1,
        settings={"command": command, "env": {"GREETING": "hi {job}"}},
        inputs=(InputRef("raw.a", "2024-01-02", "e1", location="/data/a"),),
        outputs=("out.x",),
        workdir=tmp_path / "w",
        timeout_s=timeout_s,
    )


def test_success_reports_outputs(tmp_path: Path):
    launcher = CommandLauncher(Settings(home=tmp_path))
    c = ctx(tmp_path, [sys.executable, "-c", SCRIPT, "/data/out/{partition}"])
    handle = launcher.start(c)
    result = launcher.wait(handle, c)
    assert result.succeeded, result.error
    [out] = result.outputs
    assert (out.dataset, out.row_count, out.location) == ("out.x", 1, "/data/out/2024-01-02")
    assert out.columns[0].name == "id"
    assert "partition 2024-01-02 hi j" in Path(result.log_path).read_text()
    assert not launcher.is_alive(handle)
    assert json.loads(json.dumps(dict(handle.data)))["pid"] > 0  # the handle is JSON-storable


def test_failure_and_timeout(tmp_path: Path):
    launcher = CommandLauncher(Settings(home=tmp_path))
    c = ctx(tmp_path, "sh -c 'echo ERROR: no such table >&2; exit 3'")
    result = launcher.wait(launcher.start(c), c)
    assert not result.succeeded and "exit code 3" in result.error and "no such table" in result.error
    c = ctx(tmp_path, ["sleep", "30"], timeout_s=0.5)
    handle = launcher.start(c)
    assert launcher.is_alive(handle)
    result = launcher.wait(handle, c)
    assert not result.succeeded and "timed out" in result.error and not launcher.is_alive(handle)


def test_details_a_job_reports_reach_the_result_even_when_it_fails(tmp_path: Path):
    """How a job says it refuses its input (the engine then blocks the run: tests/core/test_engine.py)."""
    launcher = CommandLauncher(Settings(home=tmp_path))
    script = (
        "import sys; from coordinator.launchers.result import report_details; "
        "report_details({'blocked': True, 'mismatched_columns': ['plan']}); sys.exit(3)"
    )
    c = ctx(tmp_path, [sys.executable, "-c", script])
    result = launcher.wait(launcher.start(c), c)
    assert not result.succeeded and "exit code 3" in result.error
    assert dict(result.details) == {"blocked": True, "mismatched_columns": ["plan"], "exit_code": 3}


def test_a_job_s_end_is_seen_at_once_by_its_own_launcher_and_after_a_restart(tmp_path: Path):
    """A child of ours and a process that is not (one re-attached after a restart: its parent is
    gone) are both seen ending within a few milliseconds, not at the next look of a poll."""
    launcher = CommandLauncher(Settings(home=tmp_path))
    took = []
    for i in range(5):
        c = dataclasses.replace(ctx(tmp_path, ["true"]), workdir=tmp_path / f"t{i}")
        t0 = time.perf_counter()
        assert launcher.wait(launcher.start(c), c).succeeded
        took.append(time.perf_counter() - t0)
    assert statistics.median(took) < 0.04, took  # a 50 ms poll would make this ≥ 50 ms

    # a process whose parent has exited: it is nobody's child here, as after a restart
    pid = int(subprocess.check_output(["sh", "-c", "sleep 0.6 >/dev/null 2>&1 & echo $!"], text=True))
    handle = Handle("command", {"pid": pid, "start_time": _proc_start_time(pid), "workdir": str(tmp_path)})
    assert launcher.is_alive(handle)
    assert not wait_ended(handle, 0.1)  # still running: the wait times out
    t0 = time.monotonic()
    assert wait_ended(handle, 10.0)
    assert not launcher.is_alive(handle) and time.monotonic() - t0 < 0.9

    # a PID that now names another process (its start time differs) has ended already
    assert wait_ended(Handle("command", {"pid": os.getpid(), "start_time": "0", "workdir": "."}), 5.0)


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()


def test_no_shell_between_the_coordinator_and_the_job_and_its_exit_code_is_kept(tmp_path: Path):
    """The job is its own argv in a session of its own, a child of the process's spawner, which
    writes its exit code whoever waits for it — none for a job killed by a signal, as the wrapper
    shell, killed with the job's group, left none."""
    from coordinator.launchers.process import terminate
    from coordinator.launchers.spawning import spawner

    launcher = CommandLauncher(Settings(home=tmp_path))
    c = ctx(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"])
    handle = launcher.start(c)
    pid, helper = int(handle.data["pid"]), spawner()
    assert helper is not None and handle.data["spawner"]["pid"] == helper.pid
    deadline, cmd = time.monotonic() + 5, b""
    while not cmd and time.monotonic() < deadline:  # empty for a moment while the exec completes
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    assert cmd.split(b"\0")[0] == sys.executable.encode(), cmd  # the job itself, not /bin/sh
    fields = _stat(pid)
    assert int(fields[1]) == helper.pid and os.getsid(pid) == pid  # its parent, its own session
    terminate(handle, grace_s=5)
    started = time.monotonic()
    result = launcher.wait(handle, c)
    assert time.monotonic() - started < 1.0  # the end is known at once, code or not
    assert not result.succeeded and "without an exit code (killed)" in (result.error or "")
    assert not (c.workdir / "exit_code").exists()
    assert (c.workdir / "exit_code.signal").read_text().strip() == "15"  # SIGTERM
    ended = dataclasses.replace(ctx(tmp_path, [sys.executable, "-c", "pass"]), workdir=tmp_path / "w0")
    assert launcher.wait(launcher.start(ended), ended).succeeded
    assert (ended.workdir / "exit_code").read_text().strip() == "0"


def test_a_missing_program_fails_to_start_and_a_dead_spawner_is_replaced(tmp_path: Path):
    import pytest

    from coordinator.errors import LaunchError
    from coordinator.launchers.spawning import spawner

    launcher = CommandLauncher(Settings(home=tmp_path))
    with pytest.raises(LaunchError, match="cannot start 'no-such-program-here'"):
        launcher.start(ctx(tmp_path, ["no-such-program-here", "x"]))
    first = spawner()
    assert first is not None
    first.stop()  # killed: the next launch starts another
    failing = ctx(tmp_path, [sys.executable, "-c", "raise SystemExit(3)"])
    c = dataclasses.replace(failing, workdir=tmp_path / "w2")
    handle = launcher.start(c)
    assert handle.data["spawner"]["pid"] not in (None, first.pid)
    result = launcher.wait(handle, c)
    assert not result.succeeded and "exit code 3" in (result.error or "")


def test_a_relative_working_folder_is_the_coordinators_not_the_last_jobs(tmp_path: Path, monkeypatch):
    """The spawner's own working folder moves with each job: a job's relative `cwd` still means
    the coordinator's working folder, as it did under the shell."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path)
    launcher = CommandLauncher(Settings(home=tmp_path))
    command = [sys.executable, "-c", "import os; print(os.getcwd())"]
    for i in range(2):  # the second after the spawner moved into the first one's folder
        c = dataclasses.replace(
            ctx(tmp_path, command), settings={"command": command, "cwd": "here"}, workdir=tmp_path / f"w{i}"
        )
        result = launcher.wait(launcher.start(c), c)
        assert result.succeeded, result.error
        assert (c.workdir / "log").read_text().strip() == str(tmp_path / "here")


def test_a_job_gets_sigpipe_at_its_default_as_under_a_shell(tmp_path: Path):
    """Python ignores SIGPIPE; a job the spawner starts must not inherit that (a `cmd | head`
    would then fail with EPIPE instead of ending quietly)."""
    import signal

    launcher = CommandLauncher(Settings(home=tmp_path))
    c = ctx(tmp_path, ["cat", "/proc/self/status"])  # a program that leaves its signals as it got them
    result = launcher.wait(launcher.start(c), c)
    assert result.succeeded, result.error
    lines = (c.workdir / "log").read_text().splitlines()
    fields = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    ignored, blocked = int(fields["SigIgn"], 16), int(fields["SigBlk"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and blocked == 0


def test_a_job_gets_the_coordinators_environment_as_it_is_at_the_launch(tmp_path: Path, monkeypatch):
    """The spawner keeps the environment it was started with and is told only what differs: a
    variable set, changed or removed in the coordinator after the spawner started reaches the job."""
    from coordinator.launchers.spawning import spawner

    monkeypatch.setenv("COORD_TEST_REMOVED", "1")
    monkeypatch.setenv("COORD_TEST_CHANGED", "before")
    helper = spawner()
    assert helper is not None
    helper.stop()  # the next launch starts one whose base holds both variables
    launcher = CommandLauncher(Settings(home=tmp_path))
    command = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    seen = []
    for i in range(2):
        if i:  # the spawner runs on, its base as it was
            monkeypatch.delenv("COORD_TEST_REMOVED")
            monkeypatch.setenv("COORD_TEST_CHANGED", "after")
            monkeypatch.setenv("COORD_TEST_ADDED", "2")
        c = dataclasses.replace(ctx(tmp_path, command), workdir=tmp_path / f"w{i}")
        result = launcher.wait(launcher.start(c), c)
        assert result.succeeded, result.error
        seen.append(json.loads((c.workdir / "log").read_text()))
    assert seen[0]["COORD_TEST_REMOVED"] == "1" and seen[0]["COORD_TEST_CHANGED"] == "before"
    assert "COORD_TEST_ADDED" not in seen[0]
    job_own = {"GREETING", *(k for k in seen[1] if k.startswith("COORD_") and k not in os.environ)}
    assert {k: v for k, v in seen[1].items() if k not in job_own} == dict(os.environ)
    assert seen[1]["COORD_TEST_CHANGED"] == "after" and seen[1]["COORD_TEST_ADDED"] == "2"
    assert seen[1]["GREETING"] == "hi j" and "COORD_TEST_REMOVED" not in seen[1]


def test_several_starts_asked_before_their_answers_each_get_their_own_job(tmp_path: Path):
    """The engine's thread asks for a start and a worker thread reads the answer later, so asks
    run ahead of answers: read in any order, from any thread, each answer is its own job's. The
    spawner makes each attempt's folder (a first attempt's run folder too), and one started again
    loses the results of its earlier start."""
    import threading

    from coordinator.launchers.process import begin_process

    workdirs = [tmp_path / "runs" / f"r{i}" / "attempt-1" for i in range(3)]
    workdirs[2].mkdir(parents=True)
    for name in ("exit_code", "exit_code.signal", "result.jsonl"):  # an earlier start's
        (workdirs[2] / name).write_text("9\n")
    script = "import sys, time; time.sleep(1); print(sys.argv[1])"
    asked = [
        begin_process("command", [sys.executable, "-c", script, str(i)], w) for i, w in enumerate(workdirs)
    ]
    handles: dict[int, Handle] = {}

    def complete(i: int) -> None:
        handles[i] = asked[i].handle()

    time.sleep(0.3)  # the three answers wait in the pipe together: the first read takes them all
    threads = [threading.Thread(target=complete, args=(i,)) for i in (2, 0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(handles) == [0, 1, 2]
    for i, handle in handles.items():
        with open(f"/proc/{handle.data['pid']}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[-2] == str(i).encode()  # the job asked for by this ask
        assert handle.data["workdir"] == str(workdirs[i])
    earlier = ("exit_code", "exit_code.signal", "result.jsonl")
    assert not any((workdirs[2] / name).exists() for name in earlier)
    for i, handle in handles.items():
        assert wait_process(handle, 10.0).succeeded
        assert (workdirs[i] / "log").read_text().strip() == str(i)
        assert (workdirs[i] / "exit_code").read_text().strip() == "0"


def test_a_spawner_killed_from_outside_costs_one_launch_under_the_wrapper(tmp_path: Path):
    """Nothing looks at the spawner before each launch: the launch that finds it dead (its pipe
    broken) starts its job under the /bin/sh wrapper, and the next one starts another spawner."""
    import signal

    from coordinator.launchers.spawning import spawner

    helper = spawner()
    assert helper is not None
    os.kill(helper.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _stat(helper.pid)[0] != "Z" and time.monotonic() < deadline:  # dead, not yet reaped
        time.sleep(0.01)
    launcher = CommandLauncher(Settings(home=tmp_path))
    pids = []
    for i in range(2):
        c = dataclasses.replace(
            ctx(tmp_path, [sys.executable, "-c", "print('ran')"]), workdir=tmp_path / f"w{i}"
        )
        handle = launcher.start(c)
        result = launcher.wait(handle, c)
        assert result.succeeded, result.error
        assert (c.workdir / "log").read_text().strip() == "ran"
        assert (c.workdir / "exit_code").read_text().strip() == "0"
        pids.append(handle.data.get("spawner", {}).get("pid"))
    assert pids[0] is None  # under the wrapper
    assert pids[1] not in (None, helper.pid)
