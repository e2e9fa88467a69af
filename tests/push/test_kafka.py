"""Kafka as a push destination, against the real broker: keyed records, diff, tombstones, Avro."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pyarrow as pa
import pytest
from confluent_kafka import Consumer

from coordinator.errors import PushError
from coordinator.push import DestinationSettings, push
from coordinator.push.destinations.kafka import avro_schema
from tests.conftest import unique

pytestmark = pytest.mark.kafka


def consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, bytes | None]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("g"),
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[bytes, bytes | None]] = []
    idle = 0
    try:
        while idle < 6 and len(got) <= expected:
            msgs = consumer.consume(1000, timeout=1.0)
            idle = 0 if msgs else idle + 1
            for m in msgs:
                assert m.error() is None, m.error()
                got.append((m.key(), m.value()))
            if len(got) == expected:
                idle = max(idle, 5)  # one more short poll to catch anything extra
    finally:
        consumer.close()
    return got


def table(n: int, bump: frozenset[int] = frozenset()) -> pa.Table:
    return pa.table(
        {
            "id": list(range(n)),
            "score": [i + (0.5 if i in bump else 0.0) for i in range(n)],
            "label": [f"l{i}" for i in range(n)],
        }
    )


def test_json_records_diff_and_tombstones(kafka_bootstrap: str, kafka_topic: str, tmp_path: Path) -> None:
    dest = DestinationSettings(url=f"kafka://{kafka_topic}")
    kw = dict(job="kjob", key=["id"], mode="mirror", state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap)
    first = push(table(100), dest, **kw)
    assert (first.inserted, first.full) == (100, True)
    second = push(table(100, frozenset({3, 50})).slice(0, 98), dest, **kw)  # 2 changed, 2 gone
    assert (second.updated, second.deleted, second.unchanged, second.full) == (2, 2, 96, False)
    assert push(table(100, frozenset({3, 50})).slice(0, 98), dest, **kw).unchanged == 98  # nothing sent

    records = consume_all(kafka_bootstrap, kafka_topic, 104)
    assert len(records) == 104
    latest = dict(records)
    assert json.loads(latest[b"3"]) == {"id": 3, "score": 3.5, "label": "l3"}
    assert latest[b"98"] is None and latest[b"99"] is None
    assert sum(1 for k, _ in records if k == b"7") == 1


def test_avro_single_object_encoding(kafka_bootstrap: str, kafka_topic: str, tmp_path: Path) -> None:
    dest = DestinationSettings(url=f"kafka://{kafka_bootstrap}/{kafka_topic}", format="avro")
    r = push(table(10), dest, job="ajob", key=["id"], state_dir=tmp_path)
    assert r.inserted == 10
    schema = fastavro.parse_schema(avro_schema(kafka_topic, table(1).schema))
    fp = bytes.fromhex(
        fastavro.schema.fingerprint(fastavro.schema.to_parsing_canonical_form(schema), "CRC-64-AVRO")
    )
    records = consume_all(kafka_bootstrap, kafka_topic, 10)
    assert len(records) == 10
    key, value = sorted(records)[0]
    assert key == b"0" and value[:2] == b"\xc3\x01" and value[2:10] == fp
    assert fastavro.schemaless_reader(io.BytesIO(value[10:]), schema) == {
        "id": 0,
        "score": 0.0,
        "label": "l0",
    }


def test_failed_push_is_aborted_then_redone(kafka_bootstrap: str, kafka_topic: str, tmp_path: Path) -> None:
    dest = DestinationSettings(url=f"kafka://{kafka_topic}")
    kw = dict(job="fjob", key=["id"], state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap)
    huge = table(20).set_column(
        2, "label", pa.array([f"l{i}" if i != 15 else "x" * 3_000_000 for i in range(20)])
    )
    with pytest.raises(PushError, match="aborted"):
        push(huge, dest, **kw)  # record 15 is over the size limit: the 15 before it are aborted
    r = push(table(20), dest, **kw)
    assert (r.inserted, r.full) == (20, True)
    records = consume_all(kafka_bootstrap, kafka_topic, 20)
    assert sorted(int(k) for k, _ in records) == list(range(20))


def test_values_json_cannot_hold_are_rejected_and_encoder_errors_abort(
    kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    kw = dict(job="njob", key=["id"], state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap)
    data = table(4).set_column(1, "score", pa.array([0.0, float("nan"), float("inf"), 3.0]))
    r = push(data, DestinationSettings(url=f"kafka://{kafka_topic}"), max_rejected_fraction=0.5, **kw)
    assert (r.inserted, r.rejected) == (2, 2) and "NaN or infinity in score" in r.reject_reasons
    assert sorted(int(k) for k, _ in consume_all(kafka_bootstrap, kafka_topic, 2)) == [0, 3]

    # Avro field names are [A-Za-z_][A-Za-z0-9_]*: other readers refuse a schema with "user id"
    avro = DestinationSettings(url=f"kafka://{kafka_bootstrap}/{kafka_topic}", format="avro")
    with pytest.raises(PushError, match="not an Avro name"):
        push(table(2).rename_columns(["id", "the score", "label"]), avro, **{**kw, "job": "ajob"})
