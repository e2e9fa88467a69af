"""The stub launcher keeps the launcher contract: scripts by key, time on an injected clock,
timeouts, cancel, and handles that outlive the coordinator that stored them (in one process)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from coordinator.errors import LaunchError
from coordinator.launchers.base import Handle, InputRef, RunContext
from coordinator.launchers.stub import StubLauncher, fail, output, refuse, succeed


class FakeClock:
    """Time that moves only when the launcher sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def ctx(job: str = "load", partition: str | None = "2024-01-01", attempt: int = 1, timeout_s=None):
    return RunContext(
        run_id=f"{job}-{partition}",
        job=job,
        partition=partition,
        attempt=attempt,
        settings={},
        inputs=(InputRef("raw.a", partition, "e1"),),
        outputs=("mid",),
        workdir=Path("/nonexistent"),
        timeout_s=timeout_s,
    )


def run(stub: StubLauncher, c: RunContext):
    return stub.wait(stub.start(c), c)


def test_the_most_specific_script_wins_and_unscripted_runs_succeed():
    stub = StubLauncher()
    stub.script("load", fail("ERROR: nope"))
    stub.script("load", succeed(output("mid", row_count=42, columns=[("id", "long")])), attempt=3)
    stub.script("load", refuse("plan is int64", mismatched_columns=["plan"]), partition="2024-01-02")
    first, third = run(stub, ctx(attempt=1)), run(stub, ctx(attempt=3))
    assert (first.succeeded, first.error) == (False, "ERROR: nope")
    assert third.succeeded and third.outputs[0].row_count == 42 and third.outputs[0].columns[0].name == "id"
    refused = run(stub, ctx(partition="2024-01-02"))
    assert not refused.succeeded and refused.details["blocked"] is True
    assert refused.details["mismatched_columns"] == ["plan"]
    assert run(stub, ctx(job="other")).succeeded
    assert stub.ran("load") == [("load", "2024-01-01"), ("load", "2024-01-01"), ("load", "2024-01-02")]


def test_time_is_spent_on_the_injected_clock_and_bounded_by_the_timeout():
    clock = FakeClock()
    stub = StubLauncher(clock=clock, sleep=clock.sleep)
    stub.script("load", succeed(seconds=30))
    c = ctx()
    handle = stub.start(c)
    assert stub.is_alive(handle)
    assert stub.wait(handle, c).succeeded and clock.now == 1030.0
    assert not stub.is_alive(handle)
    [attempt] = stub.runs
    assert (attempt.started_at, attempt.ended_at) == (1000.0, 1030.0)
    result = run(stub, ctx(attempt=2, timeout_s=5))
    assert not result.succeeded and "timed out after 5 s" in result.error and clock.now == 1035.0


def test_an_attempt_runs_until_its_event_or_a_cancel():
    stub = StubLauncher()
    release = threading.Event()
    stub.script("load", succeed(until=release))
    c = ctx()
    handle = stub.start(c)
    assert stub.is_alive(handle)
    release.set()
    assert stub.wait(handle, c).succeeded and not stub.is_alive(handle)
    stub.script("load", succeed(until=threading.Event()))  # never released
    c = ctx(attempt=2)
    handle = stub.start(c)
    stub.cancel(handle)
    result = stub.wait(handle, c)
    assert (result.succeeded, result.error) == (False, "cancelled") and not stub.is_alive(handle)


def test_a_stored_handle_is_json_and_reattaches_within_the_process_only():
    stub = StubLauncher(kind="command")
    c = ctx()
    handle = stub.start(c)
    stored = Handle(handle.kind, json.loads(json.dumps(dict(handle.data))))  # as the store keeps it
    assert stored.kind == "command" and stub.wait(stored, c).succeeded
    elsewhere = StubLauncher(kind="command")  # another process: the attempt is not there
    assert not elsewhere.is_alive(stored)
    elsewhere.cancel(stored)  # never raises for a job that is not there
    with pytest.raises(LaunchError, match="no stub attempt"):
        elsewhere.wait(stored, c)
