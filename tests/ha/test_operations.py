"""Operator commands beside a running `coord run` on one embedded home (local bus + SQLite):
a second `coord run` is refused, `coord backfill` leaves nothing stranded, `coord cancel` stops a
job's process group, SIGTERM says what it left running and the next start re-attaches it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from coordinator.bus.local import LocalBus
from coordinator.events import CompletionEvent
from coordinator.launchers.process import is_alive
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.store import StateStore
from coordinator.store import leases as L
from tests.ha.harness import CLI

DAYS = ["2024-06-01", "2024-06-02", "2024-06-03"]
SERVICES = ["run", "serve"]  # `coord run`, and `coord serve` with its HTTP side


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec_text(log: Path, sleep: float) -> str:
    cmd = f"echo {{job}} {{partition}} {{attempt}} >> {log}; sleep {sleep}"
    return f"""
datasets: {{raw.a: {{partitioning: daily}}}}
jobs:
  work: {{kind: command, inputs: [raw.a], outputs: [mid], settings: {{command: [sh, -c, '{cmd}']}}}}
  after: {{kind: command, inputs: [mid], outputs: [out], settings: {{command: [sh, -c, 'true']}}}}
pools: {{default: 4}}
"""


class Home:
    def __init__(self, tmp: Path, sleep: float) -> None:
        self.tmp, self.home, self.log = tmp, tmp / "home", tmp / "ran.log"
        self.home.mkdir()
        self.spec = tmp / "pipeline.yaml"
        self.spec.write_text(spec_text(self.log, sleep))
        self.settings = Settings(home=self.home, bus="local")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
        self.env |= {"COORD_HOME": str(self.home), "COORD_BUS": "local", "COORD_SHUTDOWN_GRACE_S": "1"}
        self.env |= {"COORD_LEASE_TTL_S": "4", "COORD_LEASE_RENEW_S": "1", "COLUMNS": "250"}
        self.store = StateStore(self.settings.resolved_state_url())
        self.procs: list[subprocess.Popen] = []

    def coord(
        self, *args: str, wait: bool = True, timeout: float = 60, name: str | None = None
    ) -> subprocess.Popen:
        """A `coord` command (under instance name `name`, else the default one)."""
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, *args],
            env=self.env | ({"COORD_INSTANCE_NAME": name} if name else {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        if wait:
            proc.output = proc.communicate(timeout=timeout)[0]  # type: ignore[attr-defined]
        return proc

    def serve(self, command: str = "run", name: str = "coordinator") -> subprocess.Popen:
        """`coord run`, or `coord serve` (with its HTTP side on a free port), until it holds its lease."""
        extra = ["--port", str(free_port())] if command == "serve" else []
        proc = self.coord(command, str(self.spec), *extra, wait=False, name=name)
        deadline = time.monotonic() + 30
        while not any(lease.startswith(name + "#") for lease in self.live()):
            assert time.monotonic() < deadline and proc.poll() is None, (
                proc.output
            )
            time.sleep(0.1)
        return proc

    def live(self) -> list[str]:
        with self.store.begin() as tx:
            return [x.lease_id for x in L.live(tx, time.time())]

    def publish(self, days: list[str]) -> None:
        with Publisher(LocalBus(self.home / "bus.db"), self.settings) as publisher:
            publisher.publish_many(
                [CompletionEvent(dataset="raw.a", partition=d, producer="test") for d in days]
            )
            publisher.flush()

    def runs(self):
        with self.store.begin() as tx:
            return tx.list_runs(limit=None)

    def until(self, what, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, [(r.job, r.partition, r.state, r.owner) for r in self.runs()]
            time.sleep(0.1)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.store.close()


@pytest.fixture
def home(tmp_path: Path):
    h = Home(tmp_path, sleep=0.2)
    yield h
    h.close()


@pytest.fixture
def slow_home(tmp_path: Path):
    h = Home(tmp_path, sleep=30)
    yield h
    for run in h.runs():  # no job outlives the test
        if run.handle is not None and is_alive(run.handle):
            os.killpg(int(run.handle.data["pid"]), signal.SIGKILL)
    h.close()


def test_a_second_coord_run_on_one_home_is_refused_with_the_first_ones_pid(home: Home):
    first = home.serve()
    second = home.coord("run", str(home.spec))
    out = second.output
    assert second.returncode == 1
    assert f"already served by pid {first.pid}" in out and "COORD_INSTANCE_NAME" in out, out
    assert first.poll() is None  # the first one serves on


@pytest.mark.parametrize("command", SERVICES)
def test_backfill_beside_a_running_service_queues_for_it_and_strands_nothing(home: Home, command: str):
    service = home.serve(command)
    home.publish(DAYS)
    home.until(lambda: len([r for r in home.runs() if r.state == "succeeded"]) == 6)
    backfill = home.coord("backfill", "work", "--from", DAYS[0], "--to", DAYS[-1], "--spec", str(home.spec))
    out = backfill.output
    assert backfill.returncode == 0, out
    assert "queued 3 run(s) of work" in out and "the running service executes them (coordinator#1)" in out
    home.until(lambda: all(r.state == "succeeded" for r in home.runs()) and len(home.runs()) >= 9)
    runs = home.runs()
    assert {r.state for r in runs} == {"succeeded"}
    assert {r.owner for r in runs} == {"coordinator#1"}  # all executed by the service
    assert service.poll() is None


def test_cancel_stops_a_command_job_s_process_group_and_downstream_waits(slow_home: Home):
    home = slow_home
    home.serve()
    home.publish(DAYS[:1])
    home.until(lambda: [r.state for r in home.runs()] == ["running"])
    [run] = home.runs()
    assert is_alive(run.handle)
    listing = home.coord("runs").output
    assert "coordinator#1" in listing and "live" in listing, listing
    cancel = home.coord("cancel", run.run_id[:10])
    out = cancel.output
    assert cancel.returncode == 0 and "cancelled" in out, out
    assert not is_alive(run.handle)
    time.sleep(2)  # the service saw its job end: it records nothing over the cancel
    [after] = home.runs()
    assert (after.state, after.error) == ("cancelled", "cancelled by an operator")
    again = home.coord("cancel", run.run_id)
    assert again.returncode == 1 and "only ready, starting or running" in again.output


@pytest.mark.parametrize("command", SERVICES)
def test_sigterm_says_what_it_left_running_and_the_next_start_reattaches_it(tmp_path: Path, command: str):
    home = Home(tmp_path, sleep=4)
    try:
        service = home.serve(command)
        home.publish(DAYS[:1])
        home.until(lambda: [r.state for r in home.runs()] == ["running"])
        service.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        home.publish(DAYS[1:2])  # after SIGTERM: not taken any more
        out, _ = service.communicate(timeout=30)
        assert service.returncode == 0, out
        assert "1 run(s) left running under lease coordinator#1, now released" in out, out
        assert [r.partition for r in home.runs()] == DAYS[:1]  # the grace took no new event
        runs = home.coord("runs").output
        assert "coordinator#1" in runs and "released" in runs, runs
        status = home.coord("status", "--spec", str(home.spec)).output
        assert "under coordinator#1 (released)" in status and "its instance is gone" in status, status
        again = home.coord("run", str(home.spec), "--until-idle", timeout=60)
        out = again.output
        assert again.returncode == 0, out
        runs = home.runs()
        assert {(r.job, r.state, r.attempt) for r in runs} == {
            ("work", "succeeded", 1),
            ("after", "succeeded", 1),
        }
        assert (
            home.log.read_text().split("\n").count(f"work {DAYS[0]} 1") == 1
        )  # re-attached, not re-launched
    finally:
        home.close()


def test_a_second_coord_run_under_another_name_on_one_home_joins_as_a_second_instance(tmp_path: Path):
    """Both read every event of the embedded bus; the store decides: each run is created once
    and claimed by one of them, so nothing is launched twice. The second is a real instance:
    when the one running the jobs is SIGKILLed, it adopts them (re-attached, not re-launched)."""
    home = Home(tmp_path, sleep=1.5)
    try:
        procs = {"a": home.serve(name="a"), "b": home.serve(name="b")}
        days = [f"2024-07-{d:02d}" for d in range(1, 11)]
        home.publish(days)
        home.until(lambda: any(r.state == "running" for r in home.runs()))
        busy = next(r.owner for r in home.runs() if r.state == "running")
        dead, survivor = busy.split("#")[0], ({"a", "b"} - {busy.split("#")[0]}).pop()
        procs[dead].send_signal(signal.SIGKILL)  # its jobs run on
        procs[dead].wait()
        home.until(
            lambda: len(home.runs()) == 2 * len(days) and {r.state for r in home.runs()} == {"succeeded"},
            timeout=60,
        )
        launched = Counter(tuple(line.split()[:2]) for line in home.log.read_text().splitlines())
        assert set(launched) == {("work", d) for d in days} and set(launched.values()) == {1}, launched
        with home.store.begin() as tx:
            lease = L.every(tx)[f"{dead}#1"]
        assert (lease.state, lease.adopted_by) == ("adopted", f"{survivor}#1")
        assert {r.attempt for r in home.runs()} == {1}
        assert f"{survivor}#1" in {r.owner for r in home.runs()}
        procs[survivor].send_signal(signal.SIGTERM)
        out, _ = procs[survivor].communicate(timeout=30)
        assert procs[survivor].returncode == 0 and "no run left running" in out, out
    finally:
        home.close()
