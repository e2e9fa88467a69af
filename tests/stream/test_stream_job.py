"""A stream job on the real broker: a click stream over a day becomes 24 hourly partitions of
`stream.clicks`, announced once each; the daily job over their window runs once they are all
complete; a SIGKILL of the worker mid-day, with offsets not yet committed, counts nothing twice;
data later than the lateness is counted, not applied."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from coordinator.errors import SettingsError
from coordinator.service import Service
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.store import schema as S
from coordinator.streambeats import read_beats
from tests.conftest import unique
from tests.stream.streams import (
    DAY,
    clicks,
    kafka_settings,
    serve_during,
    state,
    stream_spec,
    stream_spec_text,
    wait_for,
)
from tests.topic_end import read_to_end

DAILY_JOB = """import json, os
inputs = json.loads(os.environ["COORD_INPUTS"])
total = sum(i["row_count"] for i in inputs)
with open(os.environ["OUT"], "a") as out:
    out.write(f"{os.environ['COORD_PARTITION']} {len(inputs)} {total}\\n")
"""


def test_clicks_become_hourly_partitions_and_one_daily_run(
    kafka_bootstrap: str, topics: dict, tmp_path: Path
):
    from confluent_kafka import Producer

    out, daily_job = tmp_path / "daily.txt", tmp_path / "daily_job.py"
    daily_job.write_text(DAILY_JOB)
    spec = parse_spec(f"""
datasets:
  stream.clicks: {{partitioning: hourly}}
  daily.clicks: {{partitioning: daily}}
jobs:
  clicks_hourly:
    kind: stream
    outputs: [stream.clicks]
    settings: {{topic: {topics["clicks"]}, key_field: user_id, lateness_s: 7200, group: {unique("g")},
                commit_interval_s: 60, restart_backoff_s: 0.5}}
  clicks_daily:
    kind: command
    inputs: [{{dataset: stream.clicks, mapping: {{window: hourly}}}}]
    outputs: [daily.clicks]
    settings: {{command: ["{sys.executable}", "{daily_job}"], env: {{OUT: "{out}"}}}}
""")
    settings = kafka_settings(tmp_path, kafka_bootstrap, topics)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def send(batch: list[tuple[int, dict | bytes]]) -> None:
        for partition, value in batch:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            producer.produce(topics["clicks"], raw, partition=partition)
        producer.flush(30)

    first, second = clicks(0, 11), clicks(12, 23) + clicks(24, 26)  # the next day's first hours
    done, seen = threading.Event(), {}

    def drive(service: Service) -> None:
        try:
            supervisor = wait_for("the supervisor", lambda: service.streams and service.streams[0])
            folder = supervisor.folder
            send(first)
            # hours 00..08 close (watermark = 11:55 - 2 h); the worker is killed before it commits
            wait_for("nine hours closed", lambda: len(state(folder).get("announced", [])) == 9)
            killed = supervisor.process
            os.kill(killed.pid, signal.SIGKILL)
            wait_for("a restart", lambda: supervisor.starts == 2 and supervisor.health()["alive"])
            send(second)
            wait_for("the daily run", lambda: out.exists() and out.read_text(), timeout_s=90)
            send([(0, {"ts": DAY + 5 * 3600 + 60, "user_id": "u1"}), (1, b"not json")])
            wait_for("late and refused counted", lambda: state(folder)["counts"].get("rejected") == 1)
            wait_for("the heartbeat to say so", lambda: supervisor.health().get("rejected") == 1)
            from prometheus_client import generate_latest

            scrape = generate_latest(service.metrics.registry).decode()
            seen.update(state=state(folder), scrape=scrape, starts=supervisor.starts)
        except AssertionError as exc:
            seen["error"] = str(exc)
        finally:
            done.set()

    with Service(spec, settings, log_runs=False, observe=True) as service:
        driver = threading.Thread(target=drive, args=(service,), daemon=True)
        driver.start()
        service.run(stop=done.is_set, timeout_s=170)
        driver.join(5)
        with service.store.begin() as tx:
            daily_runs = tx.list_runs("clicks_daily", limit=None)
        supervisor = service.streams[0]
    assert not supervisor.health()["alive"]  # stopped with the service
    assert seen and "error" not in seen, seen.get("error", "the scenario did not finish")

    # the day's 24 windows, each with its six clicks, announced once each
    out_dir = tmp_path / "home" / "streams" / "clicks_hourly" / "windows" / "stream.clicks"
    windows = sorted(out_dir.glob("*/part-0.parquet"))
    day_windows = [w for w in windows if w.parent.name.startswith("2024-06-01")]
    assert [w.parent.name for w in day_windows] == [f"2024-06-01T{h:02d}" for h in range(24)]
    for window in day_windows:
        assert sum(pq.read_table(window).column("events").to_pylist()) == 6, window.name

    on_topic = read_to_end(kafka_bootstrap, topics["events"])
    ids = Counter(dict(m.headers())["event_id"].decode() for m in on_topic)
    hourly = {i: n for i, n in ids.items() if i.startswith("stream:clicks_hourly:stream.clicks:2024-06-01T")}
    assert len(hourly) == 24 and set(hourly.values()) == {1}

    # the daily job ran once, on its 24 complete hours (144 clicks); the next day waits for its hours
    assert out.read_text() == "2024-06-01 24 144\n"
    assert [(r.partition, r.state) for r in daily_runs] == [("2024-06-01", "succeeded")]

    # the kill came before any commit (commit interval 60 s): the restart replayed and skipped
    counts = seen["state"]["counts"]
    assert seen["starts"] == 2 and counts["replayed"] > 0
    assert counts["events"] == len(first) + len(second) and counts["late"] == 1 and counts["rejected"] == 1

    # its health on /metrics, from the worker's heartbeat
    scraped = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in seen["scrape"].splitlines()
        if line.startswith("coord_stream_")
    }
    job = '{job="clicks_hourly"}'
    assert scraped[f"coord_stream_up{job}"] == 1 and scraped[f"coord_stream_starts{job}"] == 2
    assert (
        scraped[f"coord_stream_windows_announced{job}"] == 24
        and scraped[f"coord_stream_windows_open{job}"] == 3
    )
    assert scraped['coord_stream_messages_total{job="clicks_hourly",outcome="late"}'] == 1
    assert 0 <= scraped[f"coord_stream_heartbeat_age_seconds{job}"] < 10
    assert scraped[f"coord_stream_lag_messages{job}"] == 0  # read to the end
    assert scraped[f"coord_stream_watermark_seconds{job}"] == DAY + 26 * 3600 + 3300 - 7200


def test_a_missing_interpreter_stops_the_service_at_start_saying_why(tmp_path: Path):
    spec = parse_spec(
        """
datasets: {stream.clicks: {partitioning: hourly}}
jobs:
  clicks_hourly: {kind: stream, outputs: [stream.clicks], settings: {topic: t, python: nope/python}}
""",
        base_dir=tmp_path,
    )
    settings = Settings(home=tmp_path / "home", bus="local")
    settings.home.mkdir()
    with Service(spec, settings, log_runs=False) as service, pytest.raises(SettingsError) as refused:
        service.run(until_idle=True, timeout_s=10)
    assert str(refused.value) == (
        f"stream job 'clicks_hourly': the stream worker's interpreter {tmp_path / 'nope' / 'python'} "
        "(settings.python) is missing"
    )


def test_a_stream_job_needs_one_hourly_output(tmp_path: Path):
    spec = parse_spec("""
jobs:
  clicks_daily: {kind: stream, outputs: [stream.clicks], partitioning: daily, settings: {topic: t}}
""")
    settings = Settings(home=tmp_path / "home", bus="local")
    settings.home.mkdir()
    with (
        Service(spec, settings, log_runs=False) as service,
        pytest.raises(SettingsError, match="partitioned hourly"),
    ):
        service.run(until_idle=True, timeout_s=10)


def test_one_worker_across_two_instances_and_the_standby_takes_over(
    kafka_bootstrap: str, topics: dict, tmp_path: Path
):
    """Two `coord run` processes over one state store and home: one worker runs, under the lease of
    the first; SIGKILL that coordinator and its worker goes with it, the second's starts, and the
    clicks of both workers' time are counted once."""
    import subprocess

    from confluent_kafka import Producer

    from coordinator.store import leases as L

    spec_file = tmp_path / "spec.yml"
    spec_file.write_text(stream_spec_text(topics["clicks"], "lateness_s: 0, restart_backoff_s: 0.5"))
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "COORD_HOME": str(home),
        "COORD_BUS": "kafka",
        "COORD_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "COORD_TOPIC_EVENTS": topics["events"],
        "COORD_TOPIC_DEAD_LETTER": topics["dead"],
        "COORD_CONSUMER_GROUP": unique("coord"),
    }
    coord = str(Path(sys.executable).parent / "coord")
    folder = home / "streams" / "clicks_hourly"

    def beat() -> dict:  # the latest worker's (the one gone leaves its last beat behind)
        return max(read_beats(folder), key=lambda b: b["at"], default={})

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def send(hours: range) -> None:
        for hour in hours:
            ts = DAY + hour * 3600 + 60
            producer.produce(topics["clicks"], json.dumps({"ts": ts}).encode(), partition=0)
        producer.flush(30)

    logs = [open(tmp_path / f"coord-{name}.log", "wb") for name in "ab"]  # noqa: SIM115 - closed below
    first = subprocess.Popen(
        [coord, "run", str(spec_file)],
        env={**env, "COORD_INSTANCE_NAME": "a"},
        stdout=logs[0],
        stderr=logs[0],
    )
    second = None
    try:
        worker = wait_for("the first worker", lambda: beat().get("pid"), timeout_s=60)
        second = subprocess.Popen(
            [coord, "run", str(spec_file)],
            env={**env, "COORD_INSTANCE_NAME": "b"},
            stdout=logs[1],
            stderr=logs[1],
        )
        send(range(0, 6))
        wait_for("five hours closed", lambda: beat().get("announced") == 5, timeout_s=60)
        assert beat()["pid"] == worker and second.poll() is None
        with StateStore(f"sqlite:///{home / 'state.db'}") as store, store.begin() as tx:
            held = L.named(tx, "stream:clicks_hourly")
        assert [(lease.pid, lease.state) for lease in held] == [(first.pid, "live")]

        first.send_signal(signal.SIGKILL)
        first.wait(10)
        wait_for("the worker to go with its coordinator", lambda: not alive(worker), timeout_s=45)
        wait_for("the standby's worker", lambda: beat().get("pid", worker) != worker, timeout_s=60)
        successor = beat()["pid"]
        assert alive(successor)
        send(range(6, 12))
        wait_for("eleven hours closed", lambda: beat().get("announced") == 11, timeout_s=60)
        assert beat()["events"] == 12
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(60)
        for log_file in logs:
            log_file.close()


def test_a_fresh_state_reads_the_topic_from_its_start(kafka_bootstrap: str, topics: dict, tmp_path: Path):
    """The worker's folder lost (another host's, say): the new state does not start at the offsets
    committed for the old one, so the hour open at the loss is counted whole; the hours announced
    before are announced again under the same ids, which the coordinator records once."""
    from confluent_kafka import Producer

    spec = stream_spec(topics["clicks"], "lateness_s: 0, commit_interval_s: 0.5")
    settings = kafka_settings(tmp_path, kafka_bootstrap, topics)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    folder = settings.home / "streams" / "clicks_hourly"

    def send(*minutes: int) -> None:
        for minute in minutes:
            producer.produce(topics["clicks"], json.dumps({"ts": DAY + minute * 60}).encode(), partition=0)
        producer.flush(30)

    def before(service: Service) -> None:
        send(10, 70, 130, 140)  # hours 00 and 01 close; hour 02 holds two clicks
        wait_for("two hours closed", lambda: len(state(folder).get("announced", [])) == 2)
        time.sleep(1.5)  # past the commit interval: the group has committed the four offsets

    def after(service: Service) -> None:
        send(150, 190)  # a third click of hour 02, then hour 03 closes it
        wait_for("three hours closed", lambda: len(state(folder).get("announced", [])) == 3)

    serve_during(spec, settings, before)
    generation = state(folder)["generation"]
    shutil.rmtree(folder / "state")
    serve_during(spec, settings, after)

    assert state(folder)["generation"] != generation and state(folder)["counts"]["events"] == 6
    hour_02 = folder / "windows" / "stream.clicks" / "2024-06-01T02" / "part-0.parquet"
    assert pq.read_table(hour_02).to_pylist() == [{"hour": "2024-06-01T02", "key": "all", "events": 3}]
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        e = S.events.c
        query = (
            select(e.partition_key, func.count())
            .where(e.dataset == "stream.clicks")
            .group_by(e.partition_key)
        )
        recorded = [tuple(row) for row in tx.conn.execute(query)]
    assert sorted(recorded) == [("2024-06-01T00", 1), ("2024-06-01T01", 1), ("2024-06-01T02", 1)]


def hourly_job(tmp_path: Path, line: str) -> tuple[Path, str]:
    """A `per_hour` command job on stream.clicks appending `line` (an f-string over its one input
    `i`) to a file: the file, and the job's spec lines."""
    out, script = tmp_path / "hourly.txt", tmp_path / "hourly_job.py"
    script.write_text(
        "import json, os\n"
        "[i] = json.loads(os.environ['COORD_INPUTS'])\n"
        f"open(os.environ['OUT'], 'a').write(f\"{line}\\n\")\n"
    )
    per_hour = f"""\
  per_hour:
    kind: command
    inputs: [stream.clicks]
    outputs: [hourly.report]
    settings: {{command: ["{sys.executable}", "{script}"], env: {{OUT: "{out}"}}}}
"""
    return out, per_hour


def serve_a_late_revision(spec, settings, bootstrap: str, topic: str, out: Path) -> Callable[[], list[str]]:
    """Serve the spec while hour 00 closes with one click (the job downstream runs and writes a
    line to `out`) and a late click for it then revises it (a second line); the lines' reader."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})

    def send(*minutes: int) -> None:
        for minute in minutes:
            producer.produce(topic, json.dumps({"ts": DAY + minute * 60}).encode(), partition=0)
        producer.flush(30)

    def lines() -> list[str]:
        return out.read_text().splitlines() if out.exists() else []

    def scenario(service: Service) -> None:
        send(10, 70)  # hour 00 closes with one click
        wait_for("hour 00's run", lambda: len(lines()) == 1)
        send(20)  # late for hour 00: its revision
        wait_for("hour 00's second run", lambda: len(lines()) == 2)

    serve_during(spec, settings, scenario)
    return lines


def test_late_data_reannounced_as_a_new_version_reruns_the_hour_downstream(
    kafka_bootstrap: str, topics: dict, tmp_path: Path
):
    """With `late_data: reannounce`, a click for a closed hour revises it: version 2 is announced
    under its own id and location, and the hourly job downstream runs again on it."""

    out, per_hour = hourly_job(tmp_path, "{i['partition']} {i['row_count']} {i['event_id']}")
    spec = stream_spec(topics["clicks"], "lateness_s: 0, late_data: reannounce", per_hour)
    settings = kafka_settings(tmp_path, kafka_bootstrap, topics)
    lines = serve_a_late_revision(spec, settings, kafka_bootstrap, topics["clicks"], out)
    assert lines() == [
        "2024-06-01T00 1 stream:clicks_hourly:stream.clicks:2024-06-01T00",
        "2024-06-01T00 2 stream:clicks_hourly:stream.clicks:2024-06-01T00:v2",
    ]
    windows = settings.home / "streams" / "clicks_hourly" / "windows" / "stream.clicks"
    assert pq.read_table(windows / "2024-06-01T00" / "part-0.parquet").column("events").to_pylist() == [1]
    assert pq.read_table(windows / "2024-06-01T00.v2" / "part-0.parquet").column("events").to_pylist() == [2]
    assert state(settings.home / "streams" / "clicks_hourly")["counts"]["late"] == 1


def test_windows_are_written_where_the_output_template_says(
    kafka_bootstrap: str, topics: dict, tmp_path: Path
):
    """`output` with {partition} (and {dataset}) as batch jobs' outputs: each window's folder is
    the partition's own, the announced location the job downstream is given, a revision beside it."""

    out, per_hour = hourly_job(tmp_path, "{i['partition']} {i['location']}")
    lake = tmp_path / "lake"
    options = f'lateness_s: 0, late_data: reannounce, output: "{lake}/{{dataset}}/hour={{partition}}"'
    spec = stream_spec(topics["clicks"], options, per_hour)
    settings = kafka_settings(tmp_path, kafka_bootstrap, topics)
    lines = serve_a_late_revision(spec, settings, kafka_bootstrap, topics["clicks"], out)
    first, revised = (lake / "stream.clicks" / f"hour=2024-06-01T00{v}" for v in ("", ".v2"))
    assert lines() == [f"2024-06-01T00 {first.as_uri()}", f"2024-06-01T00 {revised.as_uri()}"]
    assert pq.read_table(first / "part-0.parquet").column("events").to_pylist() == [1]
    assert pq.read_table(revised / "part-0.parquet").column("events").to_pylist() == [2]
    assert not (settings.home / "streams" / "clicks_hourly" / "windows").exists()
