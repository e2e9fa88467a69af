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
