"""One bad bus value per refusal reason, and the registry codec that can read the Confluent ones."""

from __future__ import annotations

import json
import struct
from io import BytesIO

import fastavro

from coordinator.codec import Codec, SchemaRegistry, _record, encode, topics_dir
from coordinator.events import CompletionEvent

_V2 = json.loads((topics_dir() / "completion_event.v2.avsc").read_text())
NO_DATASET = dict(_V2, fields=[f for f in _V2["fields"] if f["name"] != "dataset"])
ROW_COUNT_AS_STRING = dict(_V2, fields=[{"name": "row_count", "type": "string"} if f["name"] == "row_count"
                                        else f for f in _V2["fields"]])
REGISTRY_IDS = {7: NO_DATASET, 8: ROW_COUNT_AS_STRING, 9: _V2}


def registry_codec(max_bytes: int) -> Codec:
    return Codec(max_bytes=max_bytes, registry=SchemaRegistry(REGISTRY_IDS))


def confluent(schema_id: int, record: dict) -> bytes:
    buffer = BytesIO()
    buffer.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(REGISTRY_IDS[schema_id]), record)
    return buffer.getvalue()


def bad_values(max_bytes: int, n: int = 0) -> dict[str, bytes]:
    """reason -> a value the intake must dead-letter with that reason (`n` makes them distinct)."""
    good = CompletionEvent(dataset=f"bad.{n}", row_count=n, attributes={"n": str(n)})
    body = encode(good)[2:]
    record = _record(good)
    return {
        "undecodable": b"\x17not an event " + str(n).encode(),
        "unknown_schema_version": b"\xce\x63" + body,
        "missing_field": confluent(7, {k: v for k, v in record.items() if k != "dataset"}),
        "wrong_type": confluent(8, dict(record, row_count=f"{n} rows")),
        "oversized": encode(good.model_copy(update={"location": "x" * 3000})) + b"\x00" * max_bytes,
        "invalid": encode_invalid(good),
    }


def encode_invalid(event: CompletionEvent) -> bytes:
    """Avro-valid but breaking a model rule (empty dataset): only the checks after decoding catch it."""
    return encode(event.model_copy(update={"dataset": ""}))
