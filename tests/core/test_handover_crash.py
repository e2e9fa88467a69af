"""POST /events handed to the engine (coordinator/handover.py) survives SIGKILL: `coord serve`,
on the embedded defaults and on Kafka + PostgreSQL, is killed at random moments while a producer
posts events — half the kills the moment an answer came back — each event with its own id and
posted again after a failed request, as a producer of this API would. After a restart, every
event ran its job exactly once (read from the job's own ledger) and reached the bus (through
the outbox, published again after a crash). Answering before the commit fails it (tried)."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import unique
from tests.core.test_crash import Backend, embedded, kafka_postgres
from tests.events.conftest import read_events

CLI = "import sys; from coordinator.cli import main; sys.argv[0] = 'coord'; main()"
TOKEN = "handover-crash-token"
KILLS = 8
PARTITIONS = [f"2024-{1 + d // 28:02d}-{1 + d % 28:02d}" for d in range(40)]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `coord serve` process at a time, on the same home and port."""

    def __init__(self, home: Path, spec: Path, backend: Backend) -> None:
        self.home, self.spec, self.port, self.backend = home, spec, free_port(), backend
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, **self.backend.env, "COORD_HOME": str(self.home), "COORD_API_TOKEN": TOKEN}
        argv = [sys.executable, "-c", CLI, "serve", "--spec", str(self.spec), "--port", str(self.port)]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("coord serve did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


class Producer:
    """Posts its events in order over one kept-alive connection; one whose request failed (no
    answer: the server died) stays first in line and is posted again, with the same id."""

    def __init__(self, port: int, dataset: str) -> None:
        self.port, self.dataset = port, dataset
        self.pending = [(p, uuid.uuid4().hex) for p in PARTITIONS]
        self.ids = {event_id for _, event_id in self.pending}
        self.accepted: set[str] = set()
        self.retried: set[str] = set()

    def post_until_refused(self, stop: threading.Event, kill_after: int | None = None, pid: int = 0) -> None:
        """Post until the server is gone (or `stop`); with `kill_after`, SIGKILL it the moment
        that many 202s have come back: an answer must mean a committed event."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        answered = 0
        while self.pending and not stop.is_set():
            partition, event_id = self.pending[0]
            body = json.dumps({"dataset": self.dataset, "partition": partition, "event_id": event_id})
            try:
                conn.request("POST", "/events", body, headers)
                response = conn.getresponse()
                response.read()
            except OSError:  # the server was killed: this one is posted again after the restart
                self.retried.add(event_id)
                return
            if kill_after is not None and answered + 1 == kill_after:
                os.kill(pid, signal.SIGKILL)
            assert response.status == 202, response.status
            answered += 1
            self.accepted.add(event_id)
            self.pending.pop(0)


@pytest.mark.parametrize("backend", ["embedded", "kafka+postgres"])
def test_sigkill_while_events_are_posted_loses_none_and_runs_none_twice(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.txt"
    home.mkdir()
    where = embedded(home) if backend == "embedded" else kafka_postgres(home, request)
    dataset = unique("posted")
    spec = tmp_path / "pipeline.yml"
    command = f"[sh, -c, 'echo {{partition}} {{run_id}} >> {ledger}']"
    spec.write_text(
        f"datasets: {{{dataset}: {{partitioning: daily}}}}\n"
        f"jobs:\n  after: {{kind: command, inputs: [{dataset}], outputs: [{dataset}.out], "
        f"settings: {{command: {command}}}}}\n"
    )
    server = Server(home, spec, where)
    producer = Producer(server.port, dataset)
    rng = random.Random(23)
    try:
        for round_ in range(KILLS):
            server.start()
            assert server.proc is not None
            stop = threading.Event()
            if round_ % 2:  # at a random moment of the stream, a request likely cut short
                posting = threading.Thread(target=producer.post_until_refused, args=(stop,))
                posting.start()
                time.sleep(rng.uniform(0.005, 0.2))
            else:  # the moment the k-th answer came back (the kill is sent by the producer)
                kill_after = rng.randint(1, 6)
                posting = threading.Thread(
                    target=producer.post_until_refused, args=(stop, kill_after, server.proc.pid)
                )
                posting.start()
                posting.join(30)
            server.kill()
            stop.set()
            posting.join(30)
        server.start()  # the last life: the rest, then until every run has ended
        producer.post_until_refused(threading.Event())
        assert not producer.pending
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = ledger.read_text().splitlines() if ledger.exists() else []
            if len({line.split()[0] for line in lines}) == len(PARTITIONS):
                break
            time.sleep(0.1)
        time.sleep(0.5)  # a run started twice would write its line by now
    finally:
        server.stop()
    ran = Counter(line.split()[0] for line in ledger.read_text().splitlines())
    assert sorted(ran) == sorted(PARTITIONS)  # every posted event ran its job ...
    assert set(ran.values()) == {1}, {p: n for p, n in ran.items() if n > 1}  # ... exactly once
    assert producer.retried, "no request was cut by a kill: the test proved nothing"
    on_bus = {e.event_id for e in read_events(where.settings, 2 * len(PARTITIONS)) if e.dataset == dataset}
    assert on_bus == producer.ids  # every one published (some twice, after a crash), none lost
