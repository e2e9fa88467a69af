"""The engine on the embedded bus and SQLite: a DAG end to end, contracts, retries, restart.

Jobs are served by the stub launcher (scripted results, in process): what is tested is the
engine, not process start-up, which the command kind's own tests cover
(tests/core/test_command_launcher.py)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from coordinator.bus.local import LocalBus
from coordinator.engine import Coordinator
from coordinator.errors import BusError
from coordinator.events import Column, CompletionEvent, Status
from coordinator.hooks import Hook
from coordinator.intake import EventIntake
from coordinator.launchers.stub import StubLauncher, fail, output, refuse, succeed
from coordinator.operations import backfill, retry
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from tests.core.dag import DAYS, check_ran, dag_spec, shuffled_events


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", bus="local")


@pytest.fixture
def stub() -> StubLauncher:
    """Serves the specs' `command` jobs; every attempt succeeds unless scripted otherwise."""
    return StubLauncher(kind="command")


def coordinator(spec, settings: Settings, stub: StubLauncher, **kw) -> Coordinator:
    return Coordinator(spec, settings, launchers={"command": stub}, **kw)


def spans(stub: StubLauncher) -> dict[tuple[str, str], list[tuple[float, float]]]:
    ran: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for run in stub.runs:
        assert run.ended_at is not None, f"{run.job}[{run.partition}] never ended"
        ran[(run.job, run.partition)].append((run.started_at, run.ended_at))
    return ran


def publish(settings: Settings, events) -> None:
    bus = LocalBus(settings.home / "bus.db")
    with Publisher(bus, settings) as p:
        p.publish_many(events)
        p.flush()


def published(settings: Settings, group: str = "observer") -> list[CompletionEvent]:
    with EventIntake(LocalBus(settings.home / "bus.db"), settings, group_id=group) as intake:
        out = []
        while batch := intake.poll(1000, 0.2).events:
            out += batch
        return out


def test_dag_runs_each_partition_once_in_order_and_in_parallel(
    settings: Settings, tmp_path: Path, stub: StubLauncher
):
    log = tmp_path / "ran.log"
    settings.home.mkdir()
    stub.default = succeed(seconds=0.05)  # long enough for left and right to overlap
    publish(settings, shuffled_events())
    with coordinator(dag_spec(log), settings, stub) as coord:
        stats = coord.run(until_idle=True, timeout_s=60)
    assert (stats.succeeded, stats.failed, stats.runs_created) == (12, 0, 12)
    check_ran(spans(stub))
    outputs = [e for e in published(settings) if e.producer == "coordinator"]
    assert sorted((e.dataset, e.partition) for e in outputs) == sorted(
        (d, p) for d in ("mid", "left_out", "right_out", "final_out") for p in DAYS
    )
    # a second run over the same (replayed) events creates nothing
    with coordinator(dag_spec(log), settings, stub) as coord:
        assert coord.run(until_idle=True, timeout_s=30).runs_created == 0


CONTRACT = """
datasets:
  raw.a: {partitioning: daily, columns: [{name: id, type: long}, {name: ts, type: timestamp}]}
jobs:
  load: {kind: command, inputs: [raw.a], outputs: [mid], settings: {command: "true"}}
  after: {kind: command, inputs: [mid], outputs: [out], settings: {command: "true"}}
"""


def test_contract_violation_blocks_and_a_fixed_version_resumes(settings: Settings, stub: StubLauncher):
    settings.home.mkdir()
    bad = CompletionEvent(
        dataset="raw.a",
        partition="2024-01-01",
        columns=(Column(name="id", type="string"), Column(name="x", type="int")),
    )
    publish(settings, [bad])
    with coordinator(parse_spec(CONTRACT), settings, stub) as coord:
        stats = coord.run(until_idle=True, timeout_s=30)
        assert (stats.blocked, stats.launched) == (1, 0)
        with coord.store.begin() as tx:
            [run] = tx.list_runs(job="load")
            assert run.state == "blocked"
            assert "raw.a[2024-01-01]" in run.error and "id" in run.error and "missing column ts" in run.error
            assert tx.list_runs(job="after") == []  # downstream waits
        [failed] = [e for e in published(settings) if e.status is Status.FAILED]
        assert (failed.dataset, failed.partition) == ("mid", "2024-01-01") and "raw.a" in failed.error
        # retrying does not launch on the same incompatible data
        retry(coord.store, run.run_id)
        assert coord.run(until_idle=True, timeout_s=30).launched == 0
        publish(
            settings,
            [
                CompletionEvent(
                    dataset="raw.a",
                    partition="2024-01-01",
                    columns=(Column(name="id", type="long"), Column(name="ts", type="timestamp")),
                )
            ],
        )
        stats = coord.run(until_idle=True, timeout_s=30)
        assert stats.succeeded == 2  # load, then after


FLAKY = """
datasets: {raw.a: {partitioning: daily}}
jobs:
  load:
    kind: command
    inputs: [raw.a]
    outputs: [mid]
    retries: {max_attempts: 3, backoff_s: 0.1}
    settings: {command: "true"}
  after: {kind: command, inputs: [mid], outputs: [out], settings: {command: "true"}}
"""


def test_retry_then_fail_holds_downstream_until_coord_retry(settings: Settings, stub: StubLauncher):
    settings.home.mkdir()
    stub.script("load", fail("ERROR: nope"))
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    with coordinator(parse_spec(FLAKY), settings, stub) as coord:
        stats = coord.run(until_idle=True, timeout_s=30)
        assert (stats.retried, stats.failed, stats.succeeded) == (2, 1, 0)
        assert len(stub.ran("load")) == 3
        with coord.store.begin() as tx:
            [run] = tx.list_runs(job="load")
            assert run.state == "failed" and "ERROR: nope" in run.error
            assert [a["attempt"] for a in tx.attempts(run.run_id)] == [1, 2, 3]
            assert tx.list_runs(job="after") == []
        assert [e.dataset for e in published(settings) if e.status is Status.FAILED] == ["mid"]
        stub.script("load", succeed())  # fixed
        retry(coord.store, run.run_id[:8])
        stats = coord.run(until_idle=True, timeout_s=30)
        assert stats.succeeded == 2
        with coord.store.begin() as tx:
            assert tx.get_run(run.run_id).state == "succeeded" and tx.get_run(run.run_id).attempt == 4


def test_backfill_reruns_complete_partitions_only(settings: Settings, tmp_path: Path, stub: StubLauncher):
    settings.home.mkdir()
    spec = dag_spec(tmp_path / "ran.log", sleep=0)
    publish(settings, [CompletionEvent(dataset=d, partition=p) for d in ("raw.a", "raw.b") for p in DAYS[:2]])
    with coordinator(spec, settings, stub) as coord:
        coord.run(until_idle=True, timeout_s=30)
        result = backfill(coord.store, spec, "join", DAYS)
        assert [r.partition for r in result.created] == DAYS[:2]
        assert result.waiting == [(DAYS[2], [f"raw.a[{DAYS[2]}]", f"raw.b[{DAYS[2]}]"])]
        stats = coord.run(until_idle=True, consume=False, timeout_s=30)
        assert stats.succeeded == 2 + 6  # the two joins, then what their new outputs trigger
    assert len(stub.runs) == 8 + 8


def test_restart_reattaches_a_running_job(settings: Settings, stub: StubLauncher):
    settings.home.mkdir()
    spec = parse_spec("""
datasets: {raw.a: {partitioning: daily}}
jobs:
  slow: {kind: command, inputs: [raw.a], outputs: [o], settings: {command: "true"}}
""")
    release = threading.Event()
    stub.script("slow", succeed(until=release))  # runs until released
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    coord = coordinator(spec, settings, stub)

    def running() -> bool:
        with coord.store.begin() as tx:
            return [r.state for r in tx.list_runs()] == ["running"]

    coord.run(stop=running, timeout_s=30)  # stops while the job runs, as a crash would
    coord.close()
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        [run] = tx.list_runs()
        assert run.state == "running" and run.handle is not None
    assert stub.is_alive(run.handle)

    class ReleaseOnceReattached(Hook):
        def after_launch(self, run, handle) -> None:
            release.set()

    with coordinator(spec, settings, stub, hooks=[ReleaseOnceReattached()]) as coord:
        stats = coord.run(until_idle=True, timeout_s=30)
    assert (stats.launched, stats.succeeded) == (0, 1)  # re-attached, not re-launched
    assert stub.ran() == [("slow", "2024-01-01")]


def test_output_events_carry_what_the_job_reported(settings: Settings, stub: StubLauncher):
    settings.home.mkdir()
    spec = parse_spec("""
datasets: {raw.a: {partitioning: daily}}
jobs:
  load: {kind: command, inputs: [raw.a], outputs: [mid], settings: {command: "true"}}
""")
    stub.script("load", succeed(output("mid", row_count=42, location="/lake/mid", columns=[("id", "long")])))
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    with coordinator(spec, settings, stub) as coord:
        assert coord.run(until_idle=True, timeout_s=60).succeeded == 1
    [out] = [e for e in published(settings) if e.producer == "coordinator"]
    assert (out.dataset, out.partition, out.row_count, out.location) == ("mid", "2024-01-01", 42, "/lake/mid")
    assert [(c.name, c.type) for c in out.columns] == [("id", "long")]
    assert out.attributes["job"] == "load" and out.producer_run_id


def test_a_new_model_version_rescores_the_newest_partition_and_downstream_follows(
    settings: Settings, stub: StubLauncher
):
    settings.home.mkdir()
    spec = parse_spec("""
datasets: {raw.a: {partitioning: daily}, mlflow.models.churn: {partitioning: none}}
jobs:
  score: {kind: command, outputs: [scores],
          inputs: [raw.a, {dataset: mlflow.models.churn, mapping: latest, on_change: rerun_latest}],
          settings: {command: "true"}}
  push: {kind: command, inputs: [scores], outputs: [pushed], settings: {command: "true"}}
""")
    v1 = CompletionEvent(dataset="mlflow.models.churn", partition=None, attributes={"model_version": "1"})
    publish(settings, [v1, *(CompletionEvent(dataset="raw.a", partition=d) for d in DAYS[:2])])
    with coordinator(spec, settings, stub) as coord:
        assert coord.run(until_idle=True, timeout_s=60).succeeded == 4
    v2 = CompletionEvent(dataset="mlflow.models.churn", partition=None, attributes={"model_version": "2"})
    publish(settings, [v2, v2])  # duplicated: still one re-run
    with coordinator(spec, settings, stub) as coord:
        stats = coord.run(until_idle=True, timeout_s=60)
        assert (stats.runs_created, stats.succeeded) == (2, 2)
        with coord.store.begin() as tx:
            [newest, *_] = tx.list_runs(job="score")
    assert newest.partition == DAYS[1]
    assert v2.event_id in {v.event_id for v in newest.inputs}
    lines = [f"{job} {partition}" for job, partition in stub.ran()]
    assert sorted(lines[:4]) == sorted(f"{j} {d}" for j in ("score", "push") for d in DAYS[:2])
    assert lines[4:] == [f"score {DAYS[1]}", f"push {DAYS[1]}"]
    # the same model versions again (a poller announcing twice) re-run nothing
    publish(settings, [v2, v1])
    with coordinator(spec, settings, stub) as coord:
        stats = coord.run(until_idle=True, timeout_s=30)
        assert (stats.events, stats.runs_created) == (2, 0)


def test_a_launcher_that_reports_blocked_is_not_retried_and_keeps_its_details(
    settings: Settings, stub: StubLauncher
):
    """A job that refuses its input (e.g. a model signature mismatch) is blocked at once: the
    same input would be refused again, so retries would only waste the budget."""
    settings.home.mkdir()
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    stub.script("load", refuse("plan is int64 (model expects string)", mismatched_columns=["plan"]))
    with coordinator(parse_spec(FLAKY), settings, stub) as coord:  # 3 attempts allowed, 1 used
        stats = coord.run(until_idle=True, timeout_s=60)
        assert (stats.blocked, stats.retried, stats.failed, stats.succeeded) == (1, 0, 0, 0)
        with coord.store.begin() as tx:
            [run] = tx.list_runs(job="load")
            assert run.state == "blocked" and run.attempt == 1
            [attempt] = tx.attempts(run.run_id)
            assert attempt["state"] == "blocked"
            assert '"mismatched_columns": ["plan"]' in attempt["details"]
            assert tx.list_runs(job="after") == []  # downstream waits
    [failed] = [e for e in published(settings) if e.status is Status.FAILED]
    assert failed.dataset == "mid"


def test_a_bus_error_that_retrying_cannot_heal_stops_the_loop_with_its_message(
    settings: Settings, stub: StubLauncher
):
    """A bus file that is not a database fails the same way at every poll: the loop ends with
    that error (the service exits and says why) instead of polling again every second."""
    settings.home.mkdir()
    (settings.home / "bus.db").write_bytes(b"this is not a database, and never will be" * 100)
    started = time.monotonic()
    with coordinator(parse_spec(CONTRACT), settings, stub) as coord, pytest.raises(BusError) as raised:
        coord.run(until_idle=True, timeout_s=30)
    assert not raised.value.retriable and "not a database" in str(raised.value)
    assert time.monotonic() - started < 10


def test_workers_reuse_idle_threads_and_never_queue_behind_a_long_job() -> None:
    """Short runs reuse the threads that are idle; a task submitted while every thread is busy
    with a long job gets a thread of its own (up to the pools' total), never a place in line."""
    import threading

    from coordinator.workers import WorkerThreads

    workers = WorkerThreads(size=8)
    done = threading.Event()
    finished = threading.Semaphore(0)
    for _ in range(50):  # one after the other: one thread serves them all
        workers.submit(finished.release)
        assert finished.acquire(timeout=5)
    assert len(workers.threads) == 1
    release = threading.Event()
    workers.submit(release.wait)  # the idle thread takes a long job
    workers.submit(done.set)  # and this one must not wait for it
    assert done.wait(timeout=5), "a task waited behind a long job"
    assert len(workers.threads) == 2
    blocked = [threading.Event() for _ in range(7)]
    for event in blocked:  # seven more long jobs: the idle thread, then new ones up to the size
        workers.submit(event.wait)
    assert len(workers.threads) == 8
    release.set()
    for event in blocked:
        event.set()


def test_started_handles_are_held_until_the_job_ends_or_for_their_hold() -> None:
    """A job's handle is written with its end when it ends within the hold (one transaction, none
    while it starts up), else once the hold has passed; whatever else is written takes them along."""
    from coordinator.launchers.base import Handle, RunResult
    from coordinator.workers import Done, Started, StartedHold

    now = [100.0]
    hold = StartedHold(hold_s=0.05, clock=lambda: now[0])
    run = "run-1"  # what a report is about is not the hold's business
    started, done = Started(run, Handle("command", {"pid": 1})), Done(run, RunResult(True))
    assert hold.pass_on([started]) == [] and hold
    now[0] += 0.02
    assert hold.pass_on([]) == []
    assert hold.pass_on([done]) == [started, done] and not hold  # ended within the hold: together
    assert hold.pass_on([started]) == []
    now[0] += 0.06
    assert hold.pass_on([]) == [started] and not hold  # the hold passed: written alone
    assert hold.pass_on([started]) == []
    assert hold.pass_on([], write_anyway=True) == [started]  # a transaction happens anyway
    assert hold.pass_on([]) == []
