"""Crash safety: SIGKILL the coordinator at random moments while events stream in (with
duplicates, shuffled), restart it, and check from the jobs' own ledger that every expected run
happened exactly once per (job, partition, input set), and that no run is left stranded — on
the embedded defaults (local bus + SQLite) and on Kafka + PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.bus.factory import open_bus
from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.store import StateStore
from coordinator.store import leases as L
from tests.conftest import unique

GROUPS, WIDTH, DAYS = 2, 10, 100  # 2 jobs joining 10 sources each, over 100 days: 2,000 events
DAY_KEYS = [f"2024-{1 + d // 28:02d}-{1 + d % 28:02d}" for d in range(DAYS)]
KILLS = 10


def spec_text(log: Path) -> str:
    # the ledger line: job, partition, run id and a digest of the exact input versions it got
    digest = '$(printf %s "$COORD_INPUTS" | md5sum | cut -c1-16)'
    cmd = f"[sh, -c, 'echo {{job}} {{partition}} {{run_id}} {digest} >> {log}']"
    lines = ["datasets:"]
    lines += [f"  raw.g{g}.s{s}: {{partitioning: daily}}" for g in range(GROUPS) for s in range(WIDTH)]
    lines += ["jobs:"]
    for g in range(GROUPS):
        inputs = ", ".join(f"raw.g{g}.s{s}" for s in range(WIDTH))
        lines.append(
            f"  join{g}: {{kind: command, inputs: [{inputs}], outputs: [mid{g}],"
            f" settings: {{command: {cmd}}}}}"
        )
    mids = ", ".join(f"mid{g}" for g in range(GROUPS))
    lines.append(
        f"  final: {{kind: command, inputs: [{mids}], outputs: [out], settings: {{command: {cmd}}}}}"
    )
    lines.append("pools: {default: 16}")
    return "\n".join(lines) + "\n"


SERVE = """
import sys
from coordinator.engine import Coordinator
from coordinator.settings import Settings
from coordinator.spec import load_spec
with Coordinator(load_spec(sys.argv[1]), Settings()) as coord:
    coord.run(until_idle=sys.argv[2] == "until-idle", timeout_s=float(sys.argv[3]))
"""


@dataclass
class Backend:
    """Where the coordinator keeps its state and reads its events, as settings and as env."""

    settings: Settings
    env: dict[str, str]


def embedded(home: Path) -> Backend:
    return Backend(Settings(home=home, bus="local"), {"COORD_BUS": "local"})


def kafka_postgres(home: Path, request: pytest.FixtureRequest) -> Backend:
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    topic, state_url = request.getfixturevalue("kafka_topic"), request.getfixturevalue("postgres_url")
    group = unique("crash")
    env = {
        "COORD_BUS": "kafka",
        "COORD_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "COORD_TOPIC_EVENTS": topic,
        "COORD_TOPIC_DEAD_LETTER": topic + "-dlq",
        "COORD_CONSUMER_GROUP": group,
        "COORD_STATE_URL": state_url,
    }
    settings = Settings(
        home=home,
        bus="kafka",
        kafka_bootstrap_servers=bootstrap,
        topic_events=topic,
        topic_dead_letter=topic + "-dlq",
        consumer_group=group,
        state_url=state_url,
    )
    return Backend(settings, env)


def start(spec: Path, env: dict[str, str], mode: str = "serve", timeout_s: float = 600) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SERVE, str(spec), mode, str(timeout_s)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def launchable(published: list[CompletionEvent], log: Path) -> bool:
    """Whether some job could still be launched on what was published so far: a join whose ten
    inputs of a day are all out, or a final whose two joins of the day ran, and that is not in
    the ledger yet. Early in the stream none is, and waiting for a launch would only time out."""
    out = {(e.dataset, e.partition) for e in published}
    ran = {tuple(line.split()[:2]) for line in log.read_text().splitlines()} if log.exists() else set()
    ready = {(f"join{g}", d) for g in range(GROUPS) for d in DAY_KEYS
             if all((f"raw.g{g}.s{s}", d) in out for s in range(WIDTH))}
    ready |= {("final", d) for d in DAY_KEYS if all((f"join{g}", d) in ran for g in range(GROUPS))}
    return bool(ready - ran)


@pytest.mark.parametrize(
    "backend",
    ["embedded", pytest.param("kafka+postgres", marks=[pytest.mark.kafka, pytest.mark.postgres])],
)
def test_sigkill_at_random_moments_loses_nothing_and_launches_nothing_twice(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
):
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "ran.log"
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(spec_text(log))
    where = embedded(home) if backend == "embedded" else kafka_postgres(home, request)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
    env |= {"COORD_HOME": str(home), "COORD_BATCH_MAX_EVENTS": "200", **where.env}
    settings = where.settings

    rnd = random.Random(20241125)
    events = [
        CompletionEvent(dataset=f"raw.g{g}.s{s}", partition=d, producer="test")
        for g in range(GROUPS)
        for s in range(WIDTH)
        for d in DAY_KEYS
    ]
    stream = events + rnd.sample(events, 400)  # duplicates
    rnd.shuffle(stream)
    size = -(-len(stream) // KILLS)
    launching = 0  # kills that came while the coordinator was launching jobs
    with Publisher(open_bus(settings), settings) as publisher:
        for i in range(KILLS):
            proc = start(spec, env)
            publisher.publish_many(stream[i * size : (i + 1) * size])
            publisher.flush()
            if i % 2 and launchable(stream[: (i + 1) * size], log):  # a moment while jobs are launched
                before, deadline = lines(log), time.monotonic() + 15
                while lines(log) == before and time.monotonic() < deadline:
                    time.sleep(0.05)
                launching += lines(log) > before
                time.sleep(rnd.uniform(0, 0.3))
            else:  # ... or anywhere: starting up, ingesting, recovering
                time.sleep(rnd.uniform(0.2, 2.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    launched_before_last = lines(log)
    final = start(spec, env, "until-idle", 120)
    _, err = final.communicate(timeout=150)
    assert final.returncode == 0, err.decode()[-3000:]
    assert launching >= 2, f"only {launching} kill(s) hit a coordinator that was launching jobs"

    ledger = [tuple(line.split()) for line in log.read_text().splitlines()]
    ran = Counter((job, partition) for job, partition, _, _ in ledger)
    expected = {(f"join{g}", d) for g in range(GROUPS) for d in DAY_KEYS} | {("final", d) for d in DAY_KEYS}
    assert set(ran) == expected, (
        f"missing {sorted(expected - set(ran))[:5]}, extra {sorted(set(ran) - expected)[:5]}"
    )
    twice = {k: n for k, n in ran.items() if n > 1}
    assert not twice, f"launched more than once: {twice}"
    inputs = Counter((job, partition, digest) for job, partition, _, digest in ledger)
    assert set(inputs.values()) == {1} and len(inputs) == len(expected)  # one input set each
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        runs = tx.list_runs(limit=None)
        assert len(runs) == len(expected) and {r.state for r in runs} == {"succeeded"}
        assert {r.run_id for r in runs} == {run_id for _, _, run_id, _ in ledger}
        assert tx.count_events() == len(events) + len(expected)  # inputs + the jobs' own outputs
        assert tx.outbox_count() == 0
        # nothing stranded: each killed instance's lease was adopted, the last one ended cleanly
        states = Counter(lease.state for lease in L.every(tx).values())
        assert set(states) == {"adopted", "ended"} and states["ended"] == 1, states
        assert not L.live(tx, time.time())
    print(
        f"\n{backend}: {KILLS} kills ({launching} while launching), {len(stream)} events, "
        f"{launched_before_last} of {len(expected)} jobs ran before the last start"
    )
