"""Two workers of one stream job in one consumer group, on the real broker, while clicks flow into
a topic of four partitions: the second starts mid-stream (faust splits the partitions between
them), the first is paused past the session timeout as a coordinator that lost its lease but is
not dead yet would be (the second takes every partition, then the first wakes with its old ones
in memory), the first stops (the partitions come back to the second), a third joins and the
second is SIGKILLed (its partitions, and what it had not saved, go to the third). Then: exactly the
expected hourly windows, each announced exactly once on the completion topic (messages counted,
not ids), each with every one of its clicks, and no click counted twice or late."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from coordinator.codec import Codec
from coordinator.kinds.stream import REPO_ROOT
from coordinator.launchers.stream import free_port
from coordinator.streambeats import read_beats
from coordinator.streamstate import summary
from tests.conftest import unique
from tests.stream.streams import DAY, USERS, wait_for
from tests.topic_end import read_to_end

PARTITIONS, SLOTS, HOURS = 4, 6, 18  # clicks at :05, :15 ... :55 of hours 00..17 on each partition


@pytest.fixture
def four_partitions(kafka_bootstrap: str, stream_python: Path):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    names = {"clicks": unique("clicks4").replace("_", "-"), "events": unique("ev4").replace("_", "-")}
    created = admin.create_topics(
        [
            NewTopic(names["clicks"], num_partitions=PARTITIONS, replication_factor=1),
            NewTopic(names["events"], num_partitions=1, replication_factor=1),
        ]
    )
    for future in created.values():
        future.result(30)
    yield names
    for future in admin.delete_topics(list(names.values())).values():
        future.result(30)


class Worker:
    """One worker process of the job `clicks_hourly`: a run folder of its own (log, heartbeat),
    the job's state folder and output shared with every other worker of the job."""

    def __init__(self, name: str, tmp_path: Path, python: Path, config: dict) -> None:
        self.folder = tmp_path / name
        self.folder.mkdir()
        path = self.folder / "config.json"
        path.write_text(json.dumps({**config, "run_dir": str(self.folder), "web_port": free_port()}))
        self.log = open(self.folder / "log", "wb")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [str(python), "-m", "coordinator.streamjob", str(path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )

    def beat(self) -> dict:
        return max(read_beats(self.folder), key=lambda b: b["at"], default={})

    def holds(self) -> list[str]:
        return self.beat().get("partitions", [])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def test_two_workers_lose_no_window_and_announce_none_twice(
    kafka_bootstrap: str, four_partitions: dict, stream_python: Path, tmp_path: Path
):
    from confluent_kafka import Producer

    topic, events = four_partitions["clicks"], four_partitions["events"]
    shared = tmp_path / "job"
    config = {
        "state_dir": str(shared / "state"),
        "job": "clicks_hourly",
        "dataset": "stream.clicks",
        "output": str(shared / "windows" / "{partition}"),
        "topic": topic,
        "events_topic": events,
        "bootstrap": kafka_bootstrap,
        "group": unique("g"),
        "time_field": "ts",
        "key_field": "user_id",
        "lateness_s": 1800,  # the producer's own interleaving of partitions is not late
        "heartbeat_s": 0.5,
        "commit_interval_s": 1.0,
        "session_timeout_s": 6,  # the broker's least: a paused worker is out of the group in ~6 s
        "topics_dir": str(REPO_ROOT / "topics"),
    }
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    sent: Counter[str] = Counter()  # clicks produced per hour

    def produce(hours: range, seconds: float) -> None:
        """Hours of clicks, slot by slot across the partitions, spread over `seconds`."""
        slots = [(h, s) for h in hours for s in range(SLOTS)]
        for hour, slot in slots:
            for partition in range(PARTITIONS):
                ts = DAY + hour * 3600 + slot * 600 + 300 + partition
                user = USERS[(hour + slot + partition) % len(USERS)]
                producer.produce(topic, json.dumps({"ts": ts, "user_id": user}).encode(), partition=partition)
                if hour < HOURS:
                    sent[f"2024-06-01T{hour:02d}"] += 1
            producer.poll(0)
            time.sleep(seconds / len(slots))
        producer.flush(30)

    def announced() -> int:
        return len(summary(shared / "state").get("announced", []))

    def split(since: float, one: Worker | None = None, other: Worker | None = None) -> bool:
        """Both workers hold partitions, none held twice, all held, as beats after `since` say."""
        one, other = one or first, other or second
        beats = [one.beat(), other.beat() if other else {}]
        held = [set(b.get("partitions", [])) for b in beats if b.get("at", 0) > since]
        return len(held) == 2 and all(held) and not held[0] & held[1] and len(held[0] | held[1]) == PARTITIONS

    first = Worker("a", tmp_path, stream_python, config)
    second = third = None
    phases: dict[str, object] = {}
    try:
        wait_for("the first worker's partitions", lambda: len(first.holds()) == PARTITIONS, timeout_s=60)
        produce(range(0, 5), 1.5)
        wait_for("hours 00..02 closed", lambda: announced() >= 3, timeout_s=30)

        # a second worker mid-stream: faust splits the partitions while clicks keep coming
        joined = time.time()
        second = Worker("b", tmp_path, stream_python, config)
        flowing = threading.Thread(target=produce, args=(range(5, 10), 6.0))
        flowing.start()
        wait_for("the partitions split between the two", lambda: split(joined), timeout_s=60)
        phases["split"] = (first.holds(), second.holds())
        flowing.join()

        # the first paused past the session timeout: the second takes all; then it wakes. Paused
        # outside the state's lock (taken here a moment): one paused holding it, a few ms of each
        # flush, would hold the other back until it resumes (streamstate.py: liveness, not safety)
        with open(shared / "state" / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            first.process.send_signal(signal.SIGSTOP)
        flowing = threading.Thread(target=produce, args=(range(10, 13), 4.0))
        flowing.start()
        wait_for("the second to hold all", lambda: len(second.holds()) == PARTITIONS, timeout_s=60)
        flowing.join()
        first.process.send_signal(signal.SIGCONT)
        woken = time.time()
        wait_for("the first back in the group", lambda: split(woken), timeout_s=60)
        phases["after the pause"] = (first.holds(), second.holds())
        produce(range(13, 16), 2.0)

        # the first stops: its partitions come back to the second
        first.stop()
        wait_for("the second to hold every partition again", lambda: len(second.holds()) == PARTITIONS)

        # a third joins mid-stream, then the second is killed: its partitions, and what it held
        # unsaved, go to the third once the session times out
        joined = time.time()
        third = Worker("c", tmp_path, stream_python, config)
        flowing = threading.Thread(target=produce, args=(range(16, 18), 4.0))
        flowing.start()
        wait_for("the partitions split again", lambda: split(joined, second, third), timeout_s=60)
        phases["a third"] = (second.holds(), third.holds())
        flowing.join()
        second.process.send_signal(signal.SIGKILL)
        wait_for("the third to hold all", lambda: len(third.holds()) == PARTITIONS, timeout_s=60)
        producer.produce(topic, b"", partition=0)  # no event time: refused, counted, nothing else
        for partition in range(PARTITIONS):  # hour 18 + 31 min on every partition closes 00..17
            ts = DAY + HOURS * 3600 + 1860
            producer.produce(topic, json.dumps({"ts": ts, "user_id": "u1"}).encode(), partition=partition)
        producer.flush(30)
        wait_for("hours 00..17 closed", lambda: announced() == HOURS, timeout_s=60)
        time.sleep(1.5)  # a window announced twice would have been by now
    finally:
        for worker in (first, second, third):
            if worker is not None:
                worker.stop()

    # the partitions really moved: split, all on one while the other was paused, split again (twice)
    assert all(a and b and not set(a) & set(b) for a, b in phases.values()), phases

    # each hour announced exactly once: messages on the completion topic, not distinct ids
    messages: Counter[str] = Counter()
    decoded = {}
    for message in read_to_end(kafka_bootstrap, events):
        event = Codec().decode(message.value())
        messages[event.event_id] += 1
        decoded[event.partition] = event
    hours = [f"2024-06-01T{h:02d}" for h in range(HOURS)]
    assert messages == Counter({f"stream:clicks_hourly:stream.clicks:{h}": 1 for h in hours})

    # every click counted once: in its hour's announcement and its Parquet file, none late
    for hour in hours:
        folder = shared / "windows" / hour
        assert decoded[hour].row_count == sent[hour] == SLOTS * PARTITIONS, hour
        assert decoded[hour].location == folder.resolve().as_uri()
        assert sum(pq.read_table(folder / "part-0.parquet").column("events").to_pylist()) == sent[hour]
    assert sorted(p.name for p in (shared / "windows").iterdir()) == hours
    saved = summary(shared / "state")
    assert saved["counts"]["late"] == 0 and saved["counts"]["rejected"] == 1
    assert saved["counts"]["events"] == sum(sent.values()) + PARTITIONS  # and hour 18, still open
    assert saved["windows"] == {"2024-06-01T18": {"u1": PARTITIONS}}
