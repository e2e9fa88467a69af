"""Poison messages on the real Kafka broker, with default topic settings: every bad message ends
dead-lettered exactly once with its reason (across replays and a SIGKILL of `coord run`), the
good event behind them is processed, and a dead-letter topic that refuses writes holds the
good events up no longer than settings.dead_letter_timeout_s."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from coordinator.alerts import Alerts
from coordinator.bus.base import TopicSpec
from coordinator.bus.factory import open_bus
from coordinator.bus.kafka import KafkaBus
from coordinator.codec import decode
from coordinator.hooks import Hooks
from coordinator.intake import EventIntake
from coordinator.metrics import Metrics
from coordinator.settings import Settings
from coordinator.store.deadletters import UNWRITABLE, WRITTEN, DeadLetterBook
from coordinator.store.store import StateStore
from tests.bus.poison import GOOD, OVER_DEAD_LETTER_LIMIT, PRODUCER_ROOM, SPEC_YAML, poison, produce_all, spec
from tests.conftest import unique
from tests.observe.receiver import Receiver

pytestmark = pytest.mark.kafka


def _settings(bootstrap: str, home: Path, **more: object) -> Settings:
    names = dict(
        topic_events=unique("ev").replace("_", "-"),
        topic_dead_letter=unique("dl").replace("_", "-"),
        consumer_group=unique("g"),
        instance_name=unique("i"),
    )
    return Settings(bus="kafka", kafka_bootstrap_servers=bootstrap, home=home, **{**names, **more})


@pytest.fixture
def topics(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Settings]:
    """Fresh events and dead-letter topics with the broker's default settings."""
    settings = _settings(kafka_bootstrap, tmp_path / "home")
    bus = open_bus(settings)
    bus.ensure_topics([TopicSpec(settings.topic_events, 3), TopicSpec(settings.topic_dead_letter, 1)])
    yield settings
    _delete(kafka_bootstrap, settings.topic_events, settings.topic_dead_letter)


def _delete(bootstrap: str, *names: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept until its futures are done
    for future in admin.delete_topics(list(names)).values():
        future.result(30)


def _all(bus: KafkaBus, topic: str, expected: int, timeout: float = 60) -> list:
    out = []
    with bus.consumer(unique("reader"), [topic]) as reader:
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            out += reader.poll(500, 0.5)
        out += reader.poll(500, 1.0)  # and nothing more than expected
    return out


def _drain(
    intake: EventIntake, expected: int, commit: bool = True, timeout: float = 90
) -> tuple[int, int, list]:
    taken = dead = 0
    events = []
    deadline = time.monotonic() + timeout
    while taken < expected and time.monotonic() < deadline:
        batch = intake.poll(500, 0.5)
        assert len(batch.messages) == len(batch.events) + batch.dead_lettered + batch.skipped
        if commit:
            intake.commit(batch)
        taken += len(batch.messages)
        dead += batch.dead_lettered
        events += batch.events
    return taken, dead, events


def test_every_poison_message_is_dead_lettered_once_with_its_reason(topics: Settings) -> None:
    """Also the two that broke intake: a tombstone (TypeError in the dead-letter path, on every
    restart) and a 1.04 MB message (a dead letter too large to write, retried forever)."""
    settings, bad = topics, poison()
    bus = open_bus(settings)
    with bus.producer(max_message_bytes=PRODUCER_ROOM) as producer:
        produce_all(producer, settings.topic_events, bad)
    store = StateStore(settings.resolved_state_url())
    settings.home.mkdir(parents=True)
    with EventIntake(bus, settings, spec=spec(), store=store) as intake:
        taken, dead, events = _drain(intake, len(bad) + 1, commit=False)
    assert (taken, dead) == (len(bad) + 1, len(bad))
    assert [e.event_id for e in events] == [GOOD.event_id]

    # Not committed: a second intake of the group gets all of it again, and writes no dead letter twice
    with EventIntake(bus, settings, spec=spec(), store=store) as again:
        taken, dead, events = _drain(again, len(bad) + 1)
    assert (taken, dead, [e.event_id for e in events]) == (len(bad) + 1, len(bad), [GOOD.event_id])

    records = [r for r in map(_record, _all(bus, settings.topic_dead_letter, len(bad)))]
    assert len(records) == len(bad), "each bad message dead-lettered exactly once"
    by_offset = {(r["source_partition"], r["source_offset"]): r for r in records}
    assert len(by_offset) == len(bad)
    assert sorted(r["reason"] for r in records) == sorted(p.reason for p in bad)
    for item in bad:
        [record] = [
            r
            for r in records
            if r["value_size"] == (len(item.value) if item.value is not None else 0)
            and r["reason"] == item.reason
            and r["key"] == item.key
            and r["value_sha256"]
            == (hashlib.sha256(item.value).hexdigest() if item.value is not None else None)
        ]
        assert record["source_topic"] == settings.topic_events
        assert record["consumer_group"] == settings.consumer_group
        if item.value is None:
            assert record["value"] is None and record["truncated"] == []
        elif len(item.value) == OVER_DEAD_LETTER_LIMIT:
            assert record["truncated"] == ["value"]
            assert 900_000 < len(record["value"]) < len(item.value)
            assert item.value.startswith(record["value"])
        else:
            assert record["value"] == item.value and record["truncated"] == []
    rows = DeadLetterBook(store).rows(settings.consumer_group)
    assert len(rows) == len(bad) and {r["state"] for r in rows} == {WRITTEN}
    store.close()


def _record(message) -> dict:
    from coordinator.codec import decode_dead_letter

    return decode_dead_letter(message.value)


def test_a_dead_letter_topic_that_refuses_writes_holds_good_events_up_no_longer_than_the_bound(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = _settings(kafka_bootstrap, tmp_path / "home", dead_letter_timeout_s=5.0)
    bus = open_bus(settings)
    bus.ensure_topics(
        [
            TopicSpec(settings.topic_events, 1),
            TopicSpec(settings.topic_dead_letter, 1, config={"max.message.bytes": "200"}),
        ]
    )
    stack = ExitStack()
    try:
        bad = poison()
        with bus.producer(max_message_bytes=PRODUCER_ROOM) as producer:
            produce_all(producer, settings.topic_events, bad)
        metrics = Metrics()
        settings.home.mkdir(parents=True)
        store = StateStore(settings.resolved_state_url())
        receiver = stack.enter_context(Receiver())
        alerts = Alerts(settings.model_copy(update={"alert_webhooks": [receiver.url]}), spec(), store)
        hooks = Hooks([metrics, alerts])
        started = time.monotonic()
        with EventIntake(bus, settings, spec=spec(), store=store, hooks=hooks) as intake:
            taken, dead, events = _drain(intake, len(bad) + 1, commit=False)
        took = time.monotonic() - started
        assert [e.event_id for e in events] == [GOOD.event_id]
        assert dead == len(bad)
        assert took < settings.dead_letter_timeout_s + 10, f"good event held up {took:.1f} s"
        rows = DeadLetterBook(store).rows(settings.consumer_group)
        assert len(rows) == len(bad) and {r["state"] for r in rows} == {UNWRITABLE}
        assert all(
            "too large" in (r["error"] or "").lower() or "size" in (r["error"] or "").lower() for r in rows
        ), rows[0]["error"]
        assert {r["reason"] for r in rows} == {p.reason for p in bad}
        total = sum(
            metrics.registry.get_sample_value("coord_dead_letters_unwritable_total", {"reason": reason}) or 0
            for reason in {p.reason for p in bad}
        )
        assert total == len(bad)
        [alert] = receiver.bodies  # one incident per dead-letter topic and hour, however many messages
        assert "could not be written to the dead-letter topic" in json.dumps(alert)

        # replayed (nothing was committed): booked already, so neither tried nor counted again
        with EventIntake(bus, settings, spec=spec(), store=store, hooks=hooks) as again:
            _, dead_again, events = _drain(again, len(bad) + 1)
        assert dead_again == len(bad) and [e.event_id for e in events] == [GOOD.event_id]
        assert DeadLetterBook(store).count(settings.consumer_group) == len(bad)
        assert sum(
            metrics.registry.get_sample_value("coord_dead_letters_unwritable_total", {"reason": reason}) or 0
            for reason in {p.reason for p in bad}
        ) == len(bad)
        alerts.close()
        store.close()
    finally:
        stack.close()
        _delete(kafka_bootstrap, settings.topic_events, settings.topic_dead_letter)


# ------------------------------------------------------------------ coord run, SIGKILL, restart
def _coord() -> list[str]:
    return [str(Path(sys.executable).parent / "coord")]


def _dead_letter_rows(url: str, group: str) -> int:
    try:
        with StateStore(url) as store:
            return DeadLetterBook(store).count(group)
    except Exception:  # the store is being created by the child: not yet
        return 0


def test_poison_stream_through_coord_run_with_a_sigkill_in_the_middle(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ran = tmp_path / "ran.log"
    spec_path = tmp_path / "pipeline.yaml"
    spec_path.write_text(SPEC_YAML % ran)
    settings = _settings(kafka_bootstrap, home)
    bus = open_bus(settings)
    bus.ensure_topics([TopicSpec(settings.topic_events, 3), TopicSpec(settings.topic_dead_letter, 1)])
    env = {
        **os.environ,
        "COORD_BUS": "kafka",
        "COORD_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "COORD_HOME": str(home),
        "COORD_TOPIC_EVENTS": settings.topic_events,
        "COORD_TOPIC_DEAD_LETTER": settings.topic_dead_letter,
        "COORD_CONSUMER_GROUP": settings.consumer_group,
        "COORD_INSTANCE_NAME": settings.instance_name,
        "COORD_BATCH_MAX_EVENTS": "1",
    }
    env.pop("COORD_STATE_URL", None)
    try:
        bad = poison()
        half = len(bad) // 2
        producer = bus.producer(max_message_bytes=PRODUCER_ROOM)
        for item in bad[:half]:
            producer.produce(settings.topic_events, item.value, key=item.key)  # type: ignore[arg-type]
        producer.flush(60)
        url = settings.resolved_state_url()

        first = subprocess.Popen(
            [*_coord(), "run", str(spec_path)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:  # killed once the first half is booked: its offsets may or may not be committed yet
            deadline = time.monotonic() + 120
            while _dead_letter_rows(url, settings.consumer_group) < half and time.monotonic() < deadline:
                assert first.poll() is None, first.stderr.read().decode()[-3000:]
                time.sleep(0.02)
        finally:
            if first.poll() is None:
                os.kill(first.pid, signal.SIGKILL)
            first.wait(30)
        assert _dead_letter_rows(url, settings.consumer_group) == half
        produce_all(producer, settings.topic_events, bad[half:])
        producer.close()

        second = subprocess.run(
            [*_coord(), "run", str(spec_path), "--until-idle", "--timeout", "180"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]

        dead_letters = [_record(m) for m in _all(bus, settings.topic_dead_letter, len(bad))]
        coordinates = [(r["source_partition"], r["source_offset"]) for r in dead_letters]
        assert len(coordinates) == len(set(coordinates)) == len(bad), (
            "each bad message dead-lettered exactly once"
        )
        assert sorted(r["reason"] for r in dead_letters) == sorted(p.reason for p in bad)
        assert ran.read_text().split() == [GOOD.partition], (
            "the good event's job ran once, nothing for a bad key"
        )

        # in = processed + dead-lettered + skipped, from the durable facts: every message on the topic
        # is a dead letter (by its offset) or a recorded event (the good one, and the job's output)
        with StateStore(url) as store:
            booked = {
                (r["partition"], r["offset"]) for r in DeadLetterBook(store).rows(settings.consumer_group)
            }
            with store.begin() as tx:
                runs = tx.list_runs(limit=100)
        assert booked == set(coordinates)
        assert [(r.job, r.partition, r.state) for r in runs] == [
            ("count_orders", GOOD.partition, "succeeded")
        ]
        messages = _all(bus, settings.topic_events, len(bad) + 2)
        recorded = [m for m in messages if (m.partition, m.offset) not in booked]
        assert len(messages) == len(booked) + len(recorded) == len(bad) + 2
        assert sorted(decode(m.value).dataset for m in recorded) == ["mart.orders", "raw.orders"]
    finally:
        _delete(kafka_bootstrap, settings.topic_events, settings.topic_dead_letter)
