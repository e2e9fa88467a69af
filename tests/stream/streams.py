"""What the stream tests share: clicks over hours, waiting for a condition, the worker's saved
state, a coordinator's settings on the real broker, and a service run while a scenario plays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from coordinator.kinds.stream import REPO_ROOT
from coordinator.launchers.stream import free_port
from coordinator.service import Service
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.spec.models import PipelineSpec
from coordinator.streamstate import summary
from tests.conftest import unique

DAY = datetime(2024, 6, 1, tzinfo=UTC).timestamp()
USERS = ("u1", "u2", "u3")


def clicks(first_hour: int, last_hour: int) -> list[tuple[int, dict]]:
    """Six clicks an hour (at :05, :15 ... :55), alternating partitions and users."""
    out = []
    for hour in range(first_hour, last_hour + 1):
        for slot in range(6):
            i = len(out)
            ts = DAY + hour * 3600 + slot * 600 + 300
            out.append((i % 2, {"ts": ts, "user_id": USERS[(hour + slot) % 3]}))
    return out


def wait_for(what: str, check, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def state(folder: Path) -> dict:
    """The saved state of the stream job whose run folder is `folder`, in one dict ({}: none yet)."""
    return summary(folder / "state")


def kafka_settings(tmp_path: Path, kafka_bootstrap: str, topics: dict, **more: object) -> Settings:
    """A coordinator on the real broker, with the test's topics and a home of its own."""
    settings = Settings(
        home=tmp_path / "home",
        bus="kafka",
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_events=topics["events"],
        topic_dead_letter=topics["dead"],
        consumer_group=unique("coord"),
        **more,
    )
    settings.home.mkdir()
    return settings


def serve_during(spec, settings: Settings, scenario, **options: object) -> None:
    """Run a service (`options`: Service's, e.g. http) while `scenario(service)` runs in a thread;
    re-raise what the scenario raised."""
    done, failed = threading.Event(), []

    def drive(service: Service) -> None:
        try:
            scenario(service)
        except BaseException as exc:  # handed to the test's thread below
            failed.append(exc)
        finally:
            done.set()

    with Service(spec, settings, log_runs=False, **options) as service:  # type: ignore[arg-type]
        driver = threading.Thread(target=drive, args=(service,), daemon=True)
        driver.start()
        service.run(stop=done.is_set, timeout_s=120)
        driver.join(5)
    if failed:
        raise failed[0]


@contextmanager
def running(spec, settings: Settings, **options: object) -> Iterator[Service]:
    """A service running on a thread of its own while the caller's thread plays the scenario (one
    that must stay on its thread, as a browser driven by Playwright does); stopped on leaving."""
    stop, failed = threading.Event(), []

    def run(service: Service) -> None:
        try:
            service.run(stop=stop.is_set, timeout_s=120)
        except BaseException as exc:  # re-raised on the caller's thread below
            failed.append(exc)

    with Service(spec, settings, log_runs=False, **options) as service:  # type: ignore[arg-type]
        thread = threading.Thread(target=run, args=(service,), daemon=True)
        thread.start()
        try:
            yield service
        finally:
            stop.set()
            thread.join(60)
    if failed:
        raise failed[0]


def stream_spec_text(topic: str, settings: str, more_jobs: str = "") -> str:
    """The YAML of a spec of the stream job `clicks_hourly` (its topic, a group of its own, then
    `settings`) into hourly `stream.clicks`, and `more_jobs` (YAML under `jobs:`)."""
    return f"""
datasets:
  stream.clicks: {{partitioning: hourly}}
jobs:
  clicks_hourly:
    kind: stream
    outputs: [stream.clicks]
    settings: {{topic: {topic}, group: {unique("g")}, {settings}}}
{more_jobs}"""


def stream_spec(topic: str, settings: str, more_jobs: str = "") -> PipelineSpec:
    return parse_spec(stream_spec_text(topic, settings, more_jobs))


def worker_config(run: Path, kafka_bootstrap: str, topics: dict, **more: object) -> dict:
    """A worker's config for the job `clicks_hourly` (run folder `run`, windows under it, the
    state in `run/state` by default, a group of its own) on the test's topics; `more` on top."""
    return {
        "run_dir": str(run),
        "job": "clicks_hourly",
        "dataset": "stream.clicks",
        "output": str(run / "windows" / "{partition}"),
        "topic": topics["clicks"],
        "events_topic": topics["events"],
        "bootstrap": kafka_bootstrap,
        "group": unique("g"),
        "time_field": "ts",
        "key_field": "user_id",
        "heartbeat_s": 0.5,
        "topics_dir": str(REPO_ROOT / "topics"),
        **more,
    }


def start_worker(python: Path, config: dict, name: str, pythonpath: Path = REPO_ROOT) -> subprocess.Popen:
    """A stream worker process on `config` (its run folder holds its config file and log, `name`d),
    with `pythonpath` first (the repository, or an older release's package folder)."""
    run = Path(config["run_dir"])
    path = run / f"config-{name}.json"
    path.write_text(json.dumps({**config, "web_port": free_port()}))
    with open(run / f"log-{name}", "wb") as out:
        return subprocess.Popen(
            [str(python), "-m", "coordinator.streamjob", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=run,
            env={**os.environ, "PYTHONPATH": str(pythonpath)},
        )


def stop_worker(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a worker started by start_worker (`sig` first; killed if it outlives 30 s)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
