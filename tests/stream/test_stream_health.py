"""A stream job's health from a heartbeat per worker: the job as a whole (workers up, partitions
each holds, lag summed, the job's watermark), a stale beat left out and in time removed. Without a
broker on beats as the worker writes them; then two workers of one job sharing one run folder on
the real broker, as the UI's API and /metrics show them, one SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from coordinator.kinds.stream import StreamSettings
from coordinator.launchers.stream import StreamCollector, StreamSupervisor, stream_dir, stream_status
from coordinator.settings import Settings
from coordinator.streambeats import FORGET_BEAT_S, job_health, read_beats, write_beat
from coordinator.streamstate import summary
from tests.stream.streams import DAY, clicks, start_worker, stop_worker, wait_for, worker_config

NOW = time.time()  # the beats files' times are the real clock's


def beat(at: float, partitions: list[str], lag: int | None, watermark: float | None, **more) -> dict:
    base = {"at": at, "pid": 1, "windows_open": 1, "announced": 2, "events": 5, "late": 0}
    return {**base, "partitions": partitions, "lag": lag, "watermark": watermark, **more}


def test_the_job_as_a_whole_from_each_workers_beat(tmp_path: Path):
    write_beat(tmp_path, "a", beat(NOW - 1, ["t:0"], 3, DAY + 60), now=NOW)
    write_beat(tmp_path, "b", beat(NOW - 0.5, ["t:1", "t:2"], 4, DAY + 120, announced=3), now=NOW)
    write_beat(tmp_path, "gone", beat(NOW - 30, ["t:1"], 9, DAY + 600), now=NOW)  # stale: left out
    health = job_health(read_beats(tmp_path), NOW)
    assert (health["workers_up"], health["lag"], health["watermark"]) == (2, 7, DAY + 120)
    assert health["partitions"] == ["t:0", "t:1", "t:2"] and health["at"] == NOW - 0.5
    assert health["announced"] == 3  # the job's view of the freshest beat
    assert [(w["worker"], w["partitions"], w["lag"]) for w in health["workers"]] == [
        ("a", ["t:0"], 3),
        ("b", ["t:1", "t:2"], 4),
    ]
    # a worker whose end offsets are not fetched yet: the lag is unknown, not a partial sum
    write_beat(tmp_path, "c", beat(NOW, ["t:3"], None, None), now=NOW)
    assert job_health(read_beats(tmp_path), NOW)["lag"] is None

    # no worker up: the last beat's values, none up
    later = job_health(read_beats(tmp_path), NOW + 60)
    assert (later["workers_up"], later["at"], later["lag"], later["watermark"]) == (0, NOW, None, None)
    assert job_health([], NOW) == {}


def test_a_beat_gone_long_enough_is_removed_by_a_live_worker(tmp_path: Path):
    (tmp_path / "heartbeat.json").write_text("{}")  # the previous release's single file
    write_beat(tmp_path, "old", beat(NOW, [], 0, None), now=NOW)
    (tmp_path / "heartbeat-bad.json").write_text("{not json")  # a file being replaced, say
    assert [b["worker"] for b in read_beats(tmp_path)] == ["old"]
    for name in ("heartbeat.json", "heartbeat-old.json"):
        past = time.time() - FORGET_BEAT_S - 5
        os.utime(tmp_path / name, (past, past))
    write_beat(tmp_path, "new", beat(time.time(), [], 0, None))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heartbeat-bad.json", "heartbeat-new.json"]


def test_two_workers_sharing_a_run_folder_show_as_one_job(
    kafka_bootstrap: str, topics: dict, stream_python: Path, tmp_path: Path
):
    from confluent_kafka import Producer
    from prometheus_client import CollectorRegistry, generate_latest

    home = tmp_path / "home"
    run = stream_dir(home, "clicks_hourly")
    run.mkdir(parents=True)
    config = worker_config(run, kafka_bootstrap, topics, lateness_s=0, session_timeout_s=6)
    both = [f"{topics['clicks']}:0", f"{topics['clicks']}:1"]

    def status() -> dict:
        return stream_status(home, "clicks_hourly")

    def split() -> bool:
        s = status()
        return s["workers_up"] == 2 and sorted(len(w["partitions"]) for w in s["workers"]) == [1, 1]

    # /metrics of a coordinator whose supervisor has not started a worker here: both are elsewhere
    settings = Settings(home=home, bus="local")
    supervisor = StreamSupervisor("clicks_hourly", "stream.clicks", StreamSettings(topic="t"), settings, None)  # type: ignore[arg-type]
    registry = CollectorRegistry()
    registry.register(StreamCollector([supervisor]))

    def scrape() -> dict[str, float]:
        lines = generate_latest(registry).decode().splitlines()
        return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith("coord_")}

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    first = start_worker(stream_python, config, "a")
    second = None
    try:
        wait_for("the first worker's partitions", lambda: status()["partitions"] == both, 60)
        second = start_worker(stream_python, config, "b")
        wait_for("the partitions split between two workers", split, 60)
        for partition, value in clicks(0, 2) + [(0, {"ts": DAY + 3 * 3600 + 300, "user_id": "u1"})]:
            producer.produce(topics["clicks"], json.dumps(value).encode(), partition=partition)
        producer.flush(30)
        wait_for("hours 00..02 announced", lambda: len(summary(run / "state").get("announced", [])) == 3)
        seen = wait_for(  # a beat is written every so often: the freshest may predate the announcements
            "both beats to say so",
            lambda: (s := status())["events"] == 19 and s["lag"] == 0 and s["announced"] == 3 and s,
        )
        assert split()
        metrics = scrape()

        second.send_signal(signal.SIGKILL)
        second.wait(10)
        killed = next(w["worker"] for w in seen["workers"] if w["pid"] == second.pid)
        wait_for(
            "the first to hold both, the second's beat stale",
            lambda: (s := status())["workers_up"] == 1 and s["partitions"] == both,
            60,
        )
        past = time.time() - FORGET_BEAT_S - 5
        os.utime(run / f"heartbeat-{killed}.json", (past, past))
        wait_for("the stale beat removed", lambda: not (run / f"heartbeat-{killed}.json").exists(), 10)
        after = status()
    finally:
        for process in (first, second):
            if process is not None:
                stop_worker(process)

    saved = summary(run / "state")
    assert seen["up"] and seen["workers_up"] == 2 and 0 <= seen["heartbeat_age_s"] < 5
    assert sorted(p for w in seen["workers"] for p in w["partitions"]) == both
    assert {w["pid"] for w in seen["workers"]} == {first.pid, second.pid}
    assert (seen["lag"], seen["windows_open"], seen["announced"], seen["late"]) == (0, 1, 3, 0)
    assert seen["watermark"] == saved["watermark"] == DAY + 3 * 3600 + 300
    job = '{job="clicks_hourly"}'
    assert metrics[f"coord_stream_up{job}"] == 0  # this instance runs none of them
    assert metrics[f"coord_stream_workers_up{job}"] == 2 and metrics[f"coord_stream_lag_messages{job}"] == 0
    held = {k: v for k, v in metrics.items() if k.startswith("coord_stream_partitions_held")}
    assert sorted(held.values()) == [1.0, 1.0] and len(held) == 2
    assert metrics[f"coord_stream_watermark_seconds{job}"] == DAY + 3 * 3600 + 300
    assert after["up"] and after["workers_up"] == 1 and [w["pid"] for w in after["workers"]] == [first.pid]
