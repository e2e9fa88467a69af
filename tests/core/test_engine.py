"""The engine on the embedded bus and SQLite: a DAG end to end, contracts, retries, restart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coordinator.bus.local import LocalBus
from coordinator.engine import Coordinator
from coordinator.events import Column, CompletionEvent, Status
from coordinator.intake import EventIntake
from coordinator.operations import backfill, retry
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from tests.core.dag import DAYS, check_dag, dag_spec, shuffled_events


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", bus="local")


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


def test_dag_runs_each_partition_once_in_order_and_in_parallel(settings: Settings, tmp_path: Path):
    log = tmp_path / "ran.log"
    settings.home.mkdir()
    publish(settings, shuffled_events())
    with Coordinator(dag_spec(log), settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=60)
    assert (stats.succeeded, stats.failed, stats.runs_created) == (12, 0, 12)
    check_dag(log)
    outputs = [e for e in published(settings) if e.producer == "coordinator"]
    assert sorted((e.dataset, e.partition) for e in outputs) == sorted(
        (d, p) for d in ("mid", "left_out", "right_out", "final_out") for p in DAYS
    )
    # a second run over the same (replayed) events creates nothing
    with Coordinator(dag_spec(log), settings) as coord:
        assert coord.run(until_idle=True, timeout_s=30).runs_created == 0


CONTRACT = """
datasets:
  raw.a: {partitioning: daily, columns: [{name: id, type: long}, {name: ts, type: timestamp}]}
jobs:
  load: {kind: command, inputs: [raw.a], outputs: [mid], settings: {command: "true"}}
  after: {kind: command, inputs: [mid], outputs: [out], settings: {command: "true"}}
"""


def test_contract_violation_blocks_and_a_fixed_version_resumes(settings: Settings):
    settings.home.mkdir()
    bad = CompletionEvent(
        dataset="raw.a",
        partition="2024-01-01",
        columns=(Column(name="id", type="string"), Column(name="x", type="int")),
    )
    publish(settings, [bad])
    with Coordinator(parse_spec(CONTRACT), settings) as coord:
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
    settings:
      command: [sh, -c, 'echo attempt >> {flag}.count; test -e {flag} || { echo "ERROR: nope" >&2; exit 1; }']
  after: {kind: command, inputs: [mid], outputs: [out], settings: {command: "true"}}
"""


def test_retry_then_fail_holds_downstream_until_coord_retry(settings: Settings, tmp_path: Path):
    settings.home.mkdir()
    flag = tmp_path / "fixed"
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    with Coordinator(parse_spec(FLAKY.replace("{flag}", str(flag))), settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=30)
        assert (stats.retried, stats.failed, stats.succeeded) == (2, 1, 0)
        assert len(Path(f"{flag}.count").read_text().splitlines()) == 3
        with coord.store.begin() as tx:
            [run] = tx.list_runs(job="load")
            assert run.state == "failed" and "ERROR: nope" in run.error
            assert [a["attempt"] for a in tx.attempts(run.run_id)] == [1, 2, 3]
            assert tx.list_runs(job="after") == []
        assert [e.dataset for e in published(settings) if e.status is Status.FAILED] == ["mid"]
        flag.touch()
        retry(coord.store, run.run_id[:8])
        stats = coord.run(until_idle=True, timeout_s=30)
        assert stats.succeeded == 2
        with coord.store.begin() as tx:
            assert tx.get_run(run.run_id).state == "succeeded" and tx.get_run(run.run_id).attempt == 4


def test_backfill_reruns_complete_partitions_only(settings: Settings, tmp_path: Path):
    settings.home.mkdir()
    log = tmp_path / "ran.log"
    spec = dag_spec(log, sleep=0)
    publish(settings, [CompletionEvent(dataset=d, partition=p) for d in ("raw.a", "raw.b") for p in DAYS[:2]])
    with Coordinator(spec, settings) as coord:
        coord.run(until_idle=True, timeout_s=30)
        result = backfill(coord.store, spec, "join", DAYS)
        assert [r.partition for r in result.created] == DAYS[:2]
        assert result.waiting == [(DAYS[2], [f"raw.a[{DAYS[2]}]", f"raw.b[{DAYS[2]}]"])]
        stats = coord.run(until_idle=True, consume=False, timeout_s=30)
        assert stats.succeeded == 2 + 6  # the two joins, then what their new outputs trigger
    assert len(log.read_text().splitlines()) == 8 + 8


def test_restart_reattaches_a_running_job(settings: Settings, tmp_path: Path):
    settings.home.mkdir()
    spec = parse_spec(f"""
datasets: {{raw.a: {{partitioning: daily}}}}
jobs:
  slow: {{kind: command, inputs: [raw.a], outputs: [o],
          settings: {{command: [sh, -c, 'sleep 3; echo {{partition}} >> {tmp_path}/slow.log']}}}}
""")
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    coord = Coordinator(spec, settings)

    def running() -> bool:
        with coord.store.begin() as tx:
            return [r.state for r in tx.list_runs()] == ["running"]

    coord.run(stop=running, timeout_s=30)  # stops while the job runs, as a crash would
    coord.close()
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        [run] = tx.list_runs()
        assert run.state == "running" and run.handle is not None
    with Coordinator(spec, settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=30)
    assert (stats.launched, stats.succeeded) == (0, 1)  # re-attached, not re-launched
    assert (tmp_path / "slow.log").read_text().split() == ["2024-01-01"]


def test_output_events_carry_what_the_job_reported(settings: Settings):
    settings.home.mkdir()
    script = (
        "from coordinator.launchers.result import report_output; "
        "report_output('mid', row_count=42, location='/lake/mid', columns=[('id', 'long')])"
    )
    spec = parse_spec(f"""
datasets: {{raw.a: {{partitioning: daily}}}}
jobs:
  load:
    kind: command
    inputs: [raw.a]
    outputs: [mid]
    settings: {{command: ["{sys.executable}", -c, "{script}"]}}
""")
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    with Coordinator(spec, settings) as coord:
        assert coord.run(until_idle=True, timeout_s=60).succeeded == 1
    [out] = [e for e in published(settings) if e.producer == "coordinator"]
    assert (out.dataset, out.partition, out.row_count, out.location) == ("mid", "2024-01-01", 42, "/lake/mid")
    assert [(c.name, c.type) for c in out.columns] == [("id", "long")]
    assert out.attributes["job"] == "load" and out.producer_run_id


def test_a_new_model_version_rescores_the_newest_partition_and_downstream_follows(
    settings: Settings, tmp_path: Path
):
    settings.home.mkdir()
    log = tmp_path / "ran.log"
    line = f"echo {{job}} {{partition}} >> {log}"
    spec = parse_spec(f"""
datasets: {{raw.a: {{partitioning: daily}}, mlflow.models.churn: {{partitioning: none}}}}
jobs:
  score: {{kind: command, outputs: [scores],
          inputs: [raw.a, {{dataset: mlflow.models.churn, mapping: latest, on_change: rerun_latest}}],
          settings: {{command: [sh, -c, '{line}']}}}}
  push: {{kind: command, inputs: [scores], outputs: [pushed], settings: {{command: [sh, -c, '{line}']}}}}
""")
    v1 = CompletionEvent(dataset="mlflow.models.churn", partition=None, attributes={"model_version": "1"})
    publish(settings, [v1, *(CompletionEvent(dataset="raw.a", partition=d) for d in DAYS[:2])])
    with Coordinator(spec, settings) as coord:
        assert coord.run(until_idle=True, timeout_s=60).succeeded == 4
    v2 = CompletionEvent(dataset="mlflow.models.churn", partition=None, attributes={"model_version": "2"})
    publish(settings, [v2, v2])  # duplicated: still one re-run
    with Coordinator(spec, settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=60)
        assert (stats.runs_created, stats.succeeded) == (2, 2)
        with coord.store.begin() as tx:
            [newest, *_] = tx.list_runs(job="score")
    assert newest.partition == DAYS[1]
    assert v2.event_id in {v.event_id for v in newest.inputs}
    lines = log.read_text().splitlines()
    assert sorted(lines[:4]) == sorted(f"{j} {d}" for j in ("score", "push") for d in DAYS[:2])
    assert lines[4:] == [f"score {DAYS[1]}", f"push {DAYS[1]}"]
    # the same model versions again (a poller announcing twice) re-run nothing
    publish(settings, [v2, v1])
    with Coordinator(spec, settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=30)
        assert (stats.events, stats.runs_created) == (2, 0)


REFUSING = """
datasets: {raw.a: {partitioning: daily}}
jobs:
  score:
    kind: command
    inputs: [raw.a]
    outputs: [scores]
    retries: {max_attempts: 3, backoff_s: 0.1}
    settings:
      command: [PYTHON, -c, "import sys; from coordinator.launchers.result import report_details;
        report_details({'blocked': True, 'reason': 'plan is int64 (model expects string)',
        'mismatched_columns': ['plan']}); sys.exit(3)"]
  push: {kind: command, inputs: [scores], outputs: [pushed], settings: {command: "true"}}
"""


def test_a_launcher_that_reports_blocked_is_not_retried_and_keeps_its_details(settings: Settings):
    """A job that refuses its input (e.g. a model signature mismatch) is blocked at once: the
    same input would be refused again, so retries would only waste the budget."""
    settings.home.mkdir()
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    with Coordinator(parse_spec(REFUSING.replace("PYTHON", sys.executable)), settings) as coord:
        stats = coord.run(until_idle=True, timeout_s=60)
        assert (stats.blocked, stats.retried, stats.failed, stats.succeeded) == (1, 0, 0, 0)
        with coord.store.begin() as tx:
            [run] = tx.list_runs(job="score")
            assert run.state == "blocked" and run.attempt == 1
            [attempt] = tx.attempts(run.run_id)
            assert attempt["state"] == "blocked"
            assert '"mismatched_columns": ["plan"]' in attempt["details"]
            assert tx.list_runs(job="push") == []  # downstream waits
    [failed] = [e for e in published(settings) if e.status is Status.FAILED]
    assert failed.dataset == "scores"


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
