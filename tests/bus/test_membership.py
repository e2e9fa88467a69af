"""The consumer in its group on the real broker: a restarted instance gets its partitions back at
once (static membership), `--until-idle` is not idle before the consumer has its assignment and
has read what waits, and a bus that does not answer is one clear error and a non-zero exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from coordinator.bus.base import TopicSpec
from coordinator.bus.factory import open_bus
from coordinator.codec import encode
from coordinator.events import CompletionEvent
from coordinator.intake import EventIntake
from coordinator.settings import Settings
from tests.bus.broker import free_port
from tests.conftest import unique

COORD = str(Path(sys.executable).parent / "coord")


def _settings(bootstrap: str, home: Path) -> Settings:
    return Settings(
        bus="kafka",
        kafka_bootstrap_servers=bootstrap,
        home=home,
        topic_events=unique("ev").replace("_", "-"),
        topic_dead_letter=unique("dl").replace("_", "-"),
        consumer_group=unique("g"),
        instance_name=unique("i"),
    )


def _env(settings: Settings) -> dict[str, str]:
    env = {
        **os.environ,
        "COORD_BUS": "kafka",
        "COORD_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "COORD_HOME": str(settings.home),
        "COORD_TOPIC_EVENTS": settings.topic_events,
        "COORD_TOPIC_DEAD_LETTER": settings.topic_dead_letter,
        "COORD_CONSUMER_GROUP": settings.consumer_group,
        "COORD_INSTANCE_NAME": settings.instance_name,
    }
    env.pop("COORD_STATE_URL", None)
    return env


_MEMBER = textwrap.dedent("""
    import time
    from coordinator.bus.factory import open_bus
    from coordinator.intake import EventIntake
    from coordinator.settings import Settings

    settings = Settings()
    intake = EventIntake(open_bus(settings), settings)
    while not intake.assigned():
        intake.poll(10, 0.2)
    print("assigned", flush=True)
    time.sleep(600)
""")


@pytest.mark.kafka
def test_a_restarted_instance_gets_its_partitions_back_at_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    """SIGKILL the member: with the same instance name (group.instance.id) the new process takes
    its place at once, instead of waiting out the session timeout (10 s) for a rebalance."""
    settings = _settings(kafka_bootstrap, tmp_path / "home")
    open_bus(settings).ensure_topics([TopicSpec(settings.topic_events, 3)])
    child = subprocess.Popen(
        [sys.executable, "-c", _MEMBER], env=_env(settings), cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "assigned"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    started = time.monotonic()
    with EventIntake(open_bus(settings), settings) as intake:
        while not intake.assigned() and time.monotonic() - started < 30:
            intake.poll(10, 0.1)
        took = time.monotonic() - started
        assert intake.assigned()
        assert len(intake._consumer._consumer.assignment()) == 3  # every partition, the killed one's too
    assert took < 5, f"{took:.1f} s to get the partitions back"


@pytest.mark.kafka
def test_caught_up_only_once_assigned_and_read_to_the_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = _settings(kafka_bootstrap, tmp_path / "home")
    bus = open_bus(settings)
    bus.ensure_topics([TopicSpec(settings.topic_events, 3)])
    events = [CompletionEvent(dataset=f"ds.{i % 5}", partition="2025-01-01") for i in range(300)]
    with bus.producer() as producer:
        for e in events:
            producer.produce(settings.topic_events, encode(e), key=e.dataset.encode())
    with EventIntake(bus, settings) as intake:
        assert not intake.caught_up()  # no assignment yet: the old reading "lag 0" said idle here
        seen = 0
        answers = []
        while seen < len(events):
            batch = intake.poll(50, 0.5)
            seen += len(batch.events)
            intake.commit(batch)
            answers.append(intake.caught_up())
        assert not any(answers[:-1]), "caught up before everything was read"
        assert intake.caught_up()


@pytest.mark.kafka
def test_until_idle_after_a_restart_takes_every_waiting_event(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = _settings(kafka_bootstrap, tmp_path / "home")
    settings.home.mkdir(parents=True)
    bus = open_bus(settings)
    bus.ensure_topics([TopicSpec(settings.topic_events, 3), TopicSpec(settings.topic_dead_letter, 1)])
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("datasets:\n  raw.a: {partitioning: daily}\n")

    def publish(n: int, first: int) -> None:
        with bus.producer() as producer:
            for i in range(first, first + n):
                e = CompletionEvent(
                    dataset="raw.a", partition=f"2025-01-{1 + i % 28:02d}", attributes={"i": str(i)}
                )
                producer.produce(settings.topic_events, encode(e), key=b"raw.a")

    def until_idle() -> str:
        done = subprocess.run(
            [COORD, "run", str(spec), "--until-idle", "--timeout", "120"],
            env=_env(settings),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    publish(50, 0)
    assert "events 50 " in until_idle()
    publish(400, 50)  # waiting while no coordinator runs; the restarted one must take them all
    assert "events 400 " in until_idle()


# ------------------------------------------------------------------ the bus does not answer
def _unreachable_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "COORD_BUS": "kafka",
        "COORD_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "COORD_HOME": str(home),
        "COORD_BUS_UNREACHABLE_S": "3",
        "COORD_API_PORT": str(free_port()),
    }
    env.pop("COORD_STATE_URL", None)
    return env


@pytest.mark.parametrize(
    "command", [["run", "--until-idle"], ["run"], ["serve"], ["publish", "raw.a", "-p", "2025-01-01"]]
)
def test_kafka_unreachable_is_one_clear_error_and_a_non_zero_exit(tmp_path: Path, command: list[str]) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("datasets:\n  raw.a: {partitioning: daily}\n")
    args = [command[0], str(spec), *command[1:]] if command[0] in ("run", "serve") else command
    started = time.monotonic()
    done = subprocess.run(
        [COORD, *args],
        env=_unreachable_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert took < 30, f"{took:.1f} s to give up with COORD_BUS_UNREACHABLE_S=3"
    assert "cannot reach Kafka at 127.0.0.1:" in output, output
    assert "Traceback" not in output, output
    assert len(output.splitlines()) <= 6, output  # no line per reconnect attempt


@pytest.mark.kafka
def test_a_topic_that_does_not_exist_yet_is_nothing_to_wait_for(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The group never assigns a topic that does not exist (nothing was published yet): that is
    idle, not "waiting for the assignment" forever."""
    settings = _settings(kafka_bootstrap, tmp_path / "home")
    settings.home.mkdir(parents=True)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("datasets:\n  raw.a: {partitioning: daily}\n")
    started = time.monotonic()
    done = subprocess.run(
        [COORD, "run", str(spec), "--until-idle", "--timeout", "60"],
        env=_env(settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "events 0 " in done.stdout
    assert time.monotonic() - started < 30


@pytest.mark.kafka
@pytest.mark.parametrize("command", [["run", "--until-idle"], ["publish", "raw.a", "-p", "2025-01-01"]])
def test_wrong_credentials_are_one_clear_error_at_once(kafka_bootstrap: str, tmp_path: Path, command) -> None:
    """The broker answers but the client cannot get in (SASL against a plaintext listener): no
    waiting out the unreachable bound, one line with the driver's reason, exit 1."""
    settings = _settings(kafka_bootstrap, tmp_path / "home")
    settings.home.mkdir(parents=True)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("datasets:\n  raw.a: {partitioning: daily}\n")
    env = {
        **_env(settings),
        "COORD_KAFKA_SECURITY": '{"security.protocol": "SASL_PLAINTEXT", '
        '"sasl.mechanism": "PLAIN", "sasl.username": "nobody", "sasl.password": "wrong"}',
    }
    args = [command[0], str(spec), *command[1:]] if command[0] == "run" else command
    started = time.monotonic()
    done = subprocess.run([COORD, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert time.monotonic() - started < 25, output  # well inside COORD_BUS_UNREACHABLE_S (30 s)
    assert "SASL" in output and "Traceback" not in output, output
