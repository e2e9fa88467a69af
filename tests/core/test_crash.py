"""Crash safety: SIGKILL the coordinator at random moments while events stream in, restart it,
and check that every expected run happened exactly once (embedded bus + SQLite)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from coordinator.bus.local import LocalBus
from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.store import StateStore

GROUPS, WIDTH, DAYS = 2, 10, 100  # 2 jobs joining 10 sources each, over 100 days: 2,000 events
DAY_KEYS = [f"2024-{1 + d // 28:02d}-{1 + d % 28:02d}" for d in range(DAYS)]


def spec_text(log: Path) -> str:
    cmd = f"[sh, -c, 'echo {{job}} {{partition}} {{run_id}} >> {log}']"
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


def start(spec: Path, env: dict[str, str], mode: str = "serve", timeout_s: float = 600) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SERVE, str(spec), mode, str(timeout_s)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigkill_at_random_moments_loses_nothing_and_launches_nothing_twice(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "ran.log"
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(spec_text(log))
    env = {**os.environ, "COORD_HOME": str(home), "COORD_BUS": "local", "COORD_BATCH_MAX_EVENTS": "200"}
    env.pop("COORD_STATE_URL", None)
    settings = Settings(home=home, bus="local")

    rnd = random.Random(20241125)
    events = [
        CompletionEvent(dataset=f"raw.g{g}.s{s}", partition=d, producer="test")
        for g in range(GROUPS)
        for s in range(WIDTH)
        for d in DAY_KEYS
    ]
    stream = events + rnd.sample(events, 400)  # duplicates
    rnd.shuffle(stream)
    kills, chunks = 10, 10
    size = -(-len(stream) // chunks)
    bus = LocalBus(home / "bus.db")
    with Publisher(bus, settings) as publisher:
        for i in range(kills):
            proc = start(spec, env)
            publisher.publish_many(stream[i * size : (i + 1) * size])
            publisher.flush()
            if i % 2:  # a random moment while jobs are being launched
                before, deadline = lines(log), time.monotonic() + 15
                while lines(log) == before and time.monotonic() < deadline:
                    time.sleep(0.05)
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
    assert launched_before_last > 0, "the kills never hit a coordinator that was launching jobs"

    ran = Counter(tuple(line.split()[:2]) for line in log.read_text().splitlines())
    expected = {(f"join{g}", d) for g in range(GROUPS) for d in DAY_KEYS} | {("final", d) for d in DAY_KEYS}
    assert set(ran) == expected, (
        f"missing {sorted(expected - set(ran))[:5]}, extra {sorted(set(ran) - expected)[:5]}"
    )
    twice = {k: n for k, n in ran.items() if n > 1}
    assert not twice, f"launched more than once: {twice}"
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        runs = tx.list_runs(limit=None)
        assert len(runs) == len(expected) and {r.state for r in runs} == {"succeeded"}
        assert tx.count_events() == len(events) + len(expected)  # inputs + the jobs' own outputs
        assert tx.outbox_count() == 0
