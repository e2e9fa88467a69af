"""An in-place upgrade on the real broker: the previous release's worker (its own code, from the
repository's history) runs a job and is SIGKILLed before it commits any offset, with windows
announced and two open; this release's worker starts on its run folder, converts its state.json
and carries on. Then: every window announced exactly once on the completion topic (messages
counted: the old worker's and the new one's together), each with its six clicks, the windows open
at the upgrade completed across it, no click counted twice or late, the old generation (and so
the old consumer group) kept, and the old file kept as state.json.migrated."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

from coordinator.codec import Codec
from coordinator.streamstate import summary
from tests.stream.legacy import legacy_package
from tests.stream.streams import DAY, clicks, start_worker, stop_worker, wait_for, worker_config
from tests.topic_end import read_to_end

HOURS = [f"2024-06-01T{h:02d}" for h in range(7)]


def test_a_worker_upgraded_in_place_announces_nothing_twice(
    kafka_bootstrap: str, topics: dict, stream_python: Path, tmp_path: Path
):
    from confluent_kafka import Producer

    run = tmp_path / "run"
    run.mkdir()
    config = worker_config(
        run,
        kafka_bootstrap,
        topics,
        output_dir=str(tmp_path / "old-windows"),  # the previous release's setting
        lateness_s=3600,
        commit_interval_s=60,  # the old worker is killed before it commits: all is replayed
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def send(batch: list[tuple[int, dict]]) -> None:
        for partition, value in batch:
            producer.produce(topics["clicks"], json.dumps(value).encode(), partition=partition)
        producer.flush(30)

    day = clicks(0, 7)
    before, after = day[:27], day[27:42]  # hours 00..03 and half of 04; the rest of 04, 05, 06
    closing = [(p, {"ts": DAY + 8 * 3600 + 300, "user_id": "u1"}) for p in (0, 1)]  # closes 00..06

    old = start_worker(stream_python, config, "old", legacy_package(tmp_path / "legacy"))
    try:
        send(before)
        old_state = wait_for(
            "the old worker's three windows",
            lambda: (
                (s := _read(run / "state.json")).get("counts", {}).get("events") == 27
                and len(s.get("announced", [])) == 3
                and s
            ),
            timeout_s=90,
        )
    finally:
        stop_worker(old, signal.SIGKILL)
    assert sorted(old_state["windows"]) == HOURS[3:5] and old_state["announced"] == HOURS[:3]

    new = start_worker(stream_python, config, "new")
    try:
        wait_for("the conversion", lambda: (run / "state.json.migrated").exists(), timeout_s=60)
        send(after + closing)
        wait_for("hours 00..06 announced", lambda: len(summary(run / "state").get("announced", [])) == 7, 90)
        saved = wait_for(
            "every click applied",
            lambda: (s := summary(run / "state"))["counts"]["events"] == 44 and s,
        )
        stop_worker(new)
    finally:
        stop_worker(new, signal.SIGKILL)

    assert not (run / "state.json").exists()
    assert json.loads((run / "state.json.migrated").read_text()) == old_state
    assert saved["generation"] == old_state["generation"]  # the old consumer group resumed
    assert saved["counts"]["late"] == 0 and saved["counts"]["rejected"] == 0
    assert 0 < saved["counts"]["replayed"] <= 27  # what the old worker applied, skipped
    assert saved["windows"] == {"2024-06-01T08": {"u1": 2}}
    log = (run / "log-new").read_text()
    assert "(the previous release's state) converted into" in log

    messages: Counter[str] = Counter()
    rows = {}
    for message in read_to_end(kafka_bootstrap, topics["events"]):
        event = Codec().decode(message.value())
        messages[event.event_id] += 1
        rows[event.partition] = event.row_count
    assert messages == Counter({f"stream:clicks_hourly:stream.clicks:{h}": 1 for h in HOURS})
    assert rows == dict.fromkeys(HOURS, 6)  # hours 03 and 04 too, open at the upgrade


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
