"""Adapter-specific promises: driver errors surface as BusError only, and the embedded bus is
safe for several processes writing one file at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coordinator.bus.base import TopicSpec
from coordinator.bus.kafka import KafkaBus
from coordinator.bus.local import LocalBus
from coordinator.errors import BusError
from tests.bus.broker import free_port


def test_kafka_errors_are_bus_errors_when_no_broker_answers() -> None:
    bus = KafkaBus(f"127.0.0.1:{free_port()}", {"socket.connection.setup.timeout.ms": 1000},
                   producer_config={"message.timeout.ms": 1500})
    with pytest.raises(BusError):
        bus.ensure_topics([TopicSpec("nowhere", 1)], timeout=2)
    producer = bus.producer()
    producer.produce("nowhere", b"value", key=b"k")
    with pytest.raises(BusError, match="kafka"):
        producer.flush(5)
    consumer = bus.consumer("g", ["nowhere"])
    assert consumer.poll(10, 0.5) == []  # an outage is ridden out, not raised
    consumer.close()


def test_kafka_bad_configuration_is_a_bus_error() -> None:
    with pytest.raises(BusError):
        KafkaBus("127.0.0.1:1", {"no.such.setting": "x"}).producer().produce("t", b"v")
    with pytest.raises(BusError):
        KafkaBus("127.0.0.1:1", {"no.such.setting": "x"}).consumer("g", ["t"]).poll(1, 0.1)


def test_local_bus_errors_are_bus_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    bus = LocalBus(tmp_path / "file" / "bus.db")
    with pytest.raises(BusError):
        bus.ensure_topics([TopicSpec("t", 1)])
    with pytest.raises(BusError):
        bus.consumer("g", ["t"]).poll(1, 0.1)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    LocalBus(garbage).producer().close()  # nothing queued: nothing touches the file
    producer = LocalBus(garbage).producer()
    producer.produce("t", b"v")
    with pytest.raises(BusError):
        producer.flush()


_WRITER = textwrap.dedent("""
    import sys
    from coordinator.bus.local import LocalBus

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with LocalBus(path).producer() as producer:
        for i in range(count):
            producer.produce("t", f"{name}:{i}".encode(), key=f"{name}-{i % 4}".encode())
            if i % 50 == 0:
                producer.flush()
""")


def test_local_bus_is_safe_for_several_processes(tmp_path: Path) -> None:
    path, count = tmp_path / "bus.db", 400
    LocalBus(path).ensure_topics([TopicSpec("t", 3)])
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), f"w{n}", str(count)],
                                env=dict(os.environ), cwd=tmp_path) for n in range(4)]
    got = []
    with LocalBus(path).consumer("g", ["t"]) as consumer:  # reading while they write
        while len(got) < 4 * count:
            batch = consumer.poll(500, 5.0)
            assert batch or all(w.poll() is None for w in writers), "writers exited but messages are missing"
            consumer.commit(batch)
            got += batch
    assert all(w.wait(60) == 0 for w in writers)
    assert len(got) == len({(m.partition, m.offset) for m in got}) == 4 * count
    by_key: dict[bytes, list[int]] = {}
    for m in got:
        by_key.setdefault(m.key, []).append(int(m.value.split(b":")[1]))
    assert len(by_key) == 16 and all(seq == sorted(seq) for seq in by_key.values())


def test_kafka_lag_of_a_taken_over_partition_counts_from_the_groups_commit(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """A member that takes over partitions another member consumed and committed (it has read
    nothing from them yet, so it has no position) sees no lag — not the whole topic."""
    from tests.conftest import unique

    bus = KafkaBus(kafka_bootstrap)
    with bus.producer() as producer:
        for i in range(30):
            producer.produce(kafka_topic, b"m%d" % i, key=b"k%d" % i)
        producer.flush()
    group = unique("lag")
    first = bus.consumer(group, [kafka_topic])
    seen: list = []
    while len(seen) < 30:
        seen += first.poll(100, 1.0)
    first.commit(seen, wait=False)  # in the background; close makes sure of it
    assert first.lag() == 0
    first.close()
    second = bus.consumer(group, [kafka_topic])
    try:
        assert second.poll(100, 5.0) == []  # joins the group, gets every partition, nothing to read
        assert second.lag() == 0
    finally:
        second.close()


# ------------------------------------------------------------------ BusError.retriable
PASSING = ["_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_MSG_TIMED_OUT", "REQUEST_TIMED_OUT",
           "NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE", "REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION",
           "UNKNOWN_MEMBER_ID", "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION", "NOT_ENOUGH_REPLICAS",
           "_QUEUE_FULL", "_NO_OFFSET", "_ASSIGNMENT_LOST"]
LASTING = ["_FATAL", "_INVALID_ARG", "_AUTHENTICATION", "_SSL", "MSG_SIZE_TOO_LARGE", "INVALID_CONFIG",
           "TOPIC_AUTHORIZATION_FAILED", "FENCED_INSTANCE_ID", "GROUP_AUTHORIZATION_FAILED",
           "SASL_AUTHENTICATION_FAILED", "_UNKNOWN_TOPIC", "UNSUPPORTED_VERSION", "RECORD_LIST_TOO_LARGE",
           "PRODUCER_FENCED"]


@pytest.mark.parametrize("code", PASSING)
def test_kafka_errors_that_pass_are_retriable(code: str) -> None:
    from confluent_kafka import KafkaError, KafkaException

    from coordinator.bus.kafka import _bus_error, retriable

    error = KafkaError(getattr(KafkaError, code))
    assert retriable(error)
    assert _bus_error("commit", KafkaException(error)).retriable


@pytest.mark.parametrize("code", LASTING)
def test_kafka_errors_that_fail_again_are_not_retriable(code: str) -> None:
    from confluent_kafka import KafkaError, KafkaException

    from coordinator.bus.kafka import _bus_error, retriable

    error = KafkaError(getattr(KafkaError, code))
    assert not retriable(error)
    assert not _bus_error("consume", KafkaException(error)).retriable


def test_kafka_fatal_flag_and_librdkafka_classification_win() -> None:
    from confluent_kafka import KafkaError

    from coordinator.bus.kafka import retriable

    assert not retriable(KafkaError(KafkaError._TRANSPORT, fatal=True))  # fatal beats a retriable code
    assert retriable(KafkaError(KafkaError.UNKNOWN, retriable=True))  # librdkafka's own flag counts
    assert not retriable(KafkaError(KafkaError.UNKNOWN))


def test_kafka_configuration_mistakes_and_fenced_members_are_not_retriable() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from coordinator.bus.kafka import _bus_error

    with pytest.raises(BusError) as bad_config:
        KafkaBus("127.0.0.1:1", {"no.such.setting": "x"}).producer().produce("t", b"v")
    assert not bad_config.value.retriable
    fenced = _bus_error("consume", KafkaException(KafkaError(KafkaError.FENCED_INSTANCE_ID)))
    assert not fenced.retriable and "COORD_INSTANCE_NAME" in str(fenced)


def test_kafka_undelivered_messages_after_the_bound_are_one_clear_error() -> None:
    port = free_port()
    bus = KafkaBus(f"127.0.0.1:{port}", unreachable_s=1.5)
    producer = bus.producer()
    producer.produce("nowhere", b"value", key=b"k")
    with pytest.raises(BusError) as raised:
        producer.flush(10)
    assert not raised.value.retriable
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in str(raised.value)


def test_local_bus_errors_say_whether_to_retry(tmp_path: Path) -> None:
    import sqlite3

    from coordinator.bus.local import _bus_error

    assert _bus_error(tmp_path, sqlite3.OperationalError("database is locked")).retriable
    assert not _bus_error(tmp_path, sqlite3.DatabaseError("file is not a database")).retriable
    assert not _bus_error(tmp_path, OSError("Permission denied")).retriable
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(BusError) as unopenable:
        LocalBus(tmp_path / "file" / "bus.db").ensure_topics([TopicSpec("t", 1)])
    assert not unopenable.value.retriable
    with pytest.raises(BusError) as not_bytes:
        LocalBus(tmp_path / "bus.db").producer().produce("t", "text")  # type: ignore[arg-type]
    assert not not_bytes.value.retriable
