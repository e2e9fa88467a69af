"""Driving coordinator processes over one PostgreSQL store and one Kafka group, for the HA tests.

Each instance is a real `coord run` process. Its jobs are `command` jobs that write START and
END lines (job, partition, attempt, time) to a ledger file of their own, so what ran — and how
often — is read from what the jobs did, not from the coordinator's own account. A job process
inherits its instance's environment, which is how `kill_jobs_of` finds an instance's jobs (as
a host dying would take them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coordinator.bus.factory import open_bus
from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.store import StateStore
from coordinator.store import leases as L
from coordinator.store.schema import metadata
from tests.conftest import unique

TTL_S, RENEW_S = 4.0, 1.0
CLI = "import sys; from coordinator.cli import main; sys.argv[0] = 'coord'; main()"


def job(log: Path, sleep: float) -> str:
    line = '"{tag} {{job}} {{partition}} {{attempt}} $(date +%s.%N)"'
    start, end = line.format(tag="START"), line.format(tag="END")
    cmd = f"echo {start} >> {log}; sleep {sleep}; echo {end} >> {log}"
    return f"settings: {{command: [sh, -c, '{cmd}']}}"


# Events are keyed by dataset: these four land on all three partitions of a test topic (the
# producer's default partitioner is CRC32 of the key), so both instances of a group get some.
SOURCES = ("s0", "s1", "s4", "s5")


def spec_text(log: Path, sleep: float, pool: int = 8) -> str:
    lines = ["datasets:"]
    lines += [f"  raw.{s}: {{partitioning: daily}}" for s in SOURCES]
    lines += ["jobs:"]
    for s in SOURCES:
        lines.append(
            f"  work_{s}: {{kind: command, inputs: [raw.{s}], outputs: [mid.{s}],"
            f" retries: {{max_attempts: 3, backoff_s: 0.2}}, {job(log, sleep)}}}"
        )
        lines.append(
            f"  after_{s}: {{kind: command, inputs: [mid.{s}], outputs: [out.{s}], {job(log, 0.1)}}}"
        )
    lines.append(f"pools: {{default: {pool}}}")
    return "\n".join(lines) + "\n"


JOBS = tuple(f"{kind}_{s}" for s in SOURCES for kind in ("work", "after"))


def days(first: int, count: int) -> list[str]:
    return [f"2024-05-{d:02d}" for d in range(first, first + count)]


@dataclass
class Cluster:
    """Two (or more) instances' shared surroundings: store, topic, group, home, ledger."""

    tmp: Path
    postgres_url: str
    kafka_bootstrap: str
    topic: str
    sleep: float = 3.0
    pool: int = 8

    def __post_init__(self) -> None:
        self.group = unique("coord")
        self.ledger = self.tmp / "ledger.txt"
        self.spec = self.tmp / "pipeline.yaml"
        self.spec.write_text(spec_text(self.ledger, self.sleep, self.pool))
        self.home = self.tmp / "home"
        self.home.mkdir(exist_ok=True)
        self.settings = Settings(
            home=self.home,
            bus="kafka",
            kafka_bootstrap_servers=self.kafka_bootstrap,
            topic_events=self.topic,
            topic_dead_letter=self.topic + "-dlq",
            consumer_group=self.group,
            state_url=self.postgres_url,
        )
        self.store = StateStore(self.postgres_url)
        with self.store.begin() as tx:  # a clean store (the module shares one database)
            for table in reversed(metadata.sorted_tables):
                if table.name != "coord_schema_version":
                    tx.conn.execute(table.delete())
        self.publisher = Publisher(open_bus(self.settings), self.settings)
        self.procs: dict[str, subprocess.Popen] = {}

    def env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
        return {
            **env,
            "COORD_HOME": str(self.home),
            "COORD_BUS": "kafka",
            "COORD_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "COORD_TOPIC_EVENTS": self.topic,
            "COORD_TOPIC_DEAD_LETTER": self.topic + "-dlq",
            "COORD_CONSUMER_GROUP": self.group,
            "COORD_STATE_URL": self.postgres_url,
            "COORD_INSTANCE_NAME": name,
            "COORD_LEASE_TTL_S": str(TTL_S),
            "COORD_LEASE_RENEW_S": str(RENEW_S),
            "COORD_SHUTDOWN_GRACE_S": "1",
        }

    def start(self, name: str) -> subprocess.Popen:
        err = open(self.tmp / f"{name}.err", "ab")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "run", str(self.spec), "-v"],
            env=self.env(name),
            stdout=err,
            stderr=err,
        )
        self.procs[name] = proc
        return proc

    def stderr(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")

    def publish(self, partitions: list[str]) -> None:
        """A completion of every source dataset for each of these days."""
        self.publisher.publish_many(
            [
                CompletionEvent(dataset=f"raw.{s}", partition=p, producer="test")
                for p in partitions
                for s in SOURCES
            ]
        )
        self.publisher.flush()

    def runs(self):
        with self.store.begin() as tx:
            return tx.list_runs(limit=None)

    def leases(self) -> dict[str, L.LeaseRow]:
        with self.store.begin() as tx:
            return L.every(tx)

    def wait(self, what: Callable[[], bool], timeout_s: float, message: Callable[[], str] | str) -> float:
        deadline = time.monotonic() + timeout_s
        while not what():
            if time.monotonic() > deadline:
                raise AssertionError(message() if callable(message) else message)
            time.sleep(0.2)
        return time.monotonic()

    def assigned(self) -> dict[str, int]:
        """How many of the topic's partitions each member of the group holds, by its static
        instance id, as the group's coordinator on the broker tells it; nothing while the group
        is not stable (a member still joining, or a rebalance moving partitions)."""
        from confluent_kafka import ConsumerGroupState
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.kafka_bootstrap})
        group = admin.describe_consumer_groups([self.group], request_timeout=10)[self.group].result(15)
        if group.state != ConsumerGroupState.STABLE:
            return {}
        held = {}
        for m in group.members:
            mine = [tp for tp in m.assignment.topic_partitions if tp.topic == self.topic]
            held[m.group_instance_id or m.member_id] = len(mine)
        return held

    def running_of(self, name: str) -> list:
        return [r for r in self.runs() if r.state == "running" and (r.owner or "").startswith(name + "#")]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
        for name in self.procs:
            kill_jobs_of(name, self.home)
        self.publisher.close()
        self.store.close()


def kill_jobs_of(name: str, home: Path) -> int:
    """SIGKILL the process groups of every job started by instance `name` of the cluster at
    `home` (found by the COORD_INSTANCE_NAME and COORD_HOME its jobs inherited: another test's
    cluster running at the same time has instances of the same names); returns how many groups."""
    groups: set[int] = set()
    marker, place = f"COORD_INSTANCE_NAME={name}".encode(), f"COORD_HOME={home}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            if marker in env and place in env and any(v.startswith(b"COORD_RUN_ID=") for v in env):
                groups.add(os.getpgid(int(entry.name)))
        except OSError:
            continue
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    return len(groups)


@dataclass(frozen=True)
class Line:
    tag: str
    job: str
    partition: str
    attempt: int
    at: float


def ledger(path: Path) -> list[Line]:
    if not path.exists():
        return []
    out = []
    for text in path.read_text().splitlines():
        tag, job_, partition, attempt, at = text.split()
        out.append(Line(tag, job_, partition, int(attempt), float(at)))
    return out


def ends(path: Path) -> Counter:
    return Counter((x.job, x.partition) for x in ledger(path) if x.tag == "END")


def starts(path: Path) -> Counter:
    return Counter((x.job, x.partition) for x in ledger(path) if x.tag == "START")


def most_at_once(path: Path, prefix: str, since: float) -> int:
    """The most jobs named `prefix`... that ran at the same time (by START/END), of those
    started after `since`."""
    lines = [x for x in ledger(path) if x.job.startswith(prefix)]
    begun = {(x.job, x.partition, x.attempt): x.at for x in lines if x.tag == "START" and x.at >= since}
    edges = sorted(
        [(at, 1) for at in begun.values()]
        + [(x.at, -1) for x in lines if x.tag == "END" and (x.job, x.partition, x.attempt) in begun]
    )
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best
