"""The codec: version header, schema evolution both ways for every kept version, the Confluent
framing with a registry, and one reason per kind of bad input."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import BytesIO

import fastavro
import pytest

from coordinator.codec import (
    CURRENT_VERSION,
    Codec,
    HttpSchemaRegistry,
    SchemaRegistry,
    _record,
    codec_for,
    decode,
    encode,
    load_schema,
    schema_versions,
    topics_dir,
)
from coordinator.errors import EventError, SchemaVersionError
from coordinator.events import Column, CompletionEvent, Status
from coordinator.settings import Settings
from tests.bus.badinput import bad_values, registry_codec

FULL = CompletionEvent(
    event_id="e-1", dataset="dbt.reporting.user_features", partition="2024-06-01", status=Status.FAILED,
    producer="dbt", producer_run_id="run-42", produced_at=datetime(2024, 6, 1, 3, 4, 5, 6, tzinfo=UTC),
    row_count=12, location="s3://lake/x", error="boom", attributes={"a": "b"},
    columns=(Column(name="id", type="bigint", nullable=False), Column(name="v", type="double")))


def test_header_names_the_writer_version() -> None:
    data = encode(FULL)
    assert data[:2] == bytes((0xCE, CURRENT_VERSION))
    assert decode(data) == FULL
    assert decode(Codec(write_version=1).encode(FULL)) == FULL.model_copy(update={"error": None})


def test_at_least_two_versions_are_kept() -> None:
    versions = schema_versions()
    assert len(versions) >= 2 and versions[-1] == CURRENT_VERSION
    assert versions == list(range(1, CURRENT_VERSION + 1))


@pytest.mark.parametrize("writer", schema_versions())
@pytest.mark.parametrize("reader", schema_versions())
def test_every_kept_version_reads_every_other(writer: int, reader: int) -> None:
    """Backward and forward compatibility, by Avro schema resolution in both directions."""
    writer_schema = load_schema("completion_event", writer)
    reader_schema = load_schema("completion_event", reader)
    writer_fields = {f["name"] for f in writer_schema["fields"]}
    reader_fields = {f["name"]: f for f in reader_schema["fields"]}
    buffer = BytesIO()
    written = {k: v for k, v in _record(FULL).items() if k in writer_fields}
    fastavro.schemaless_writer(buffer, writer_schema, written)
    buffer.seek(0)
    record = fastavro.schemaless_reader(buffer, writer_schema, reader_schema)
    assert set(record) == set(reader_fields)
    for name, field in reader_fields.items():
        expected = _record(FULL)[name] if name in writer_fields else field["default"]
        assert record[name] == expected, name


def test_every_added_field_has_a_default() -> None:
    """What makes old readers and new writers agree: a field added later always has a default."""
    first = {f["name"] for f in load_schema("completion_event", schema_versions()[0])["fields"]}
    for version in schema_versions()[1:]:
        for field in load_schema("completion_event", version)["fields"]:
            assert field["name"] in first or "default" in field, (version, field["name"])


def test_an_unknown_future_status_reads_as_failed() -> None:
    raw = json.loads((topics_dir() / "completion_event.v2.avsc").read_text())
    future = json.loads(json.dumps(raw).replace('"symbols": ["succeeded", "failed"]',
                                                '"symbols": ["succeeded", "failed", "partial"]'))
    codec = Codec(registry=SchemaRegistry({5: future}))
    data = codec.encode_confluent(FULL.model_copy(update={"status": Status.SUCCEEDED}), 5, future)
    record = _record(FULL) | {"status": "partial"}
    buffer = BytesIO(b"\x00\x00\x00\x00\x05")
    buffer.seek(5)
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(future), record)
    assert codec.decode(data).status is Status.SUCCEEDED
    assert codec.decode(buffer.getvalue()).status is Status.FAILED


def test_confluent_framing_with_a_schema_id_mapping() -> None:
    v1 = json.loads((topics_dir() / "completion_event.v1.avsc").read_text())
    v2 = json.loads((topics_dir() / "completion_event.v2.avsc").read_text())
    codec = Codec(registry=SchemaRegistry({101: v1, 102: json.dumps(v2)}))
    from_v1 = codec.encode_confluent(FULL, 101, v1)
    assert from_v1[0] == 0 and int.from_bytes(from_v1[1:5], "big") == 101
    assert codec.decode(from_v1) == FULL.model_copy(update={"error": None})
    assert codec.decode(codec.encode_confluent(FULL, 102)) == FULL
    assert codec.decode(encode(FULL)) == FULL  # the native header still works beside it
    with pytest.raises(SchemaVersionError) as unknown:
        codec.decode(codec.encode_confluent(FULL, 999))
    assert unknown.value.reason == "unknown_schema_version"
    with pytest.raises(EventError) as no_registry:
        Codec().decode(from_v1)
    assert no_registry.value.reason == "undecodable"


@pytest.fixture
def registry_server() -> Iterator[str]:
    """A registry answering GET /schemas/ids/{id} on 127.0.0.1, as Confluent's does."""
    schema = (topics_dir() / "completion_event.v2.avsc").read_text()
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            hits.append(self.path)
            found = self.path == "/schemas/ids/31"
            body = json.dumps({"schema": schema} if found else {"error_code": 40403}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    assert hits.count("/schemas/ids/31") == 1  # cached after the first fetch


def test_registry_url_in_settings_enables_the_framing(registry_server: str) -> None:
    codec = codec_for(Settings(schema_registry_url=registry_server))
    assert isinstance(codec.registry, HttpSchemaRegistry)
    data = Codec().encode_confluent(FULL, 31)
    assert codec.decode(data) == FULL and codec.decode(data) == FULL
    with pytest.raises(EventError) as unknown:
        codec.decode(Codec().encode_confluent(FULL, 32))
    assert unknown.value.reason == "unknown_schema_version"


@pytest.mark.parametrize("reason", sorted(bad_values(2000)))
def test_each_bad_input_has_its_reason(reason: str) -> None:
    with pytest.raises(EventError) as refused:
        registry_codec(2000).decode(bad_values(2000)[reason])
    assert refused.value.reason == reason


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "undecodable"), (b"\xce", "undecodable"), (b"\x7fxyz", "undecodable"),
    (encode(FULL)[:-3], "undecodable"), (encode(FULL) + b"\x00", "undecodable"),
    (b"\xce\x00" + encode(FULL)[2:], "unknown_schema_version"),
])
def test_truncated_padded_and_foreign_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(EventError) as refused:
        decode(data)
    assert refused.value.reason == reason


def test_encoding_checks_size_too() -> None:
    with pytest.raises(EventError) as refused:
        Codec(max_bytes=100).encode(FULL.model_copy(update={"location": "x" * 200}))
    assert refused.value.reason == "oversized"


def test_decoded_events_equal_validated_ones() -> None:
    """model_construct skips validation; the result must be what validation would have built."""
    decoded = decode(encode(FULL))
    assert decoded == CompletionEvent.model_validate(decoded.model_dump())
    assert decoded.model_dump_json() == FULL.model_dump_json()


def test_direct_reader_is_used_for_the_current_version_only() -> None:
    assert Codec()._fast and not Codec(fast=False)._fast
    event = FULL.model_copy(update={"columns": FULL.columns})
    assert Codec().decode(encode(event)) == Codec(fast=False).decode(encode(event)) == event


def test_direct_reader_refuses_non_canonical_avro() -> None:
    """fastavro reads a boolean byte 2 as true; the direct reader refuses it, as Avro's spec does."""
    data = bytearray(encode(CompletionEvent(event_id="a", dataset="d", columns=[Column(name="n", type="t")])))
    flag = data.index(b"\x02n\x02t\x01") + 5
    data[flag - 1] = 2
    with pytest.raises(EventError) as refused:
        decode(bytes(data))
    assert refused.value.reason == "undecodable"


def test_any_bytes_like_value_decodes() -> None:
    data = encode(FULL)
    assert decode(bytearray(data)) == decode(memoryview(data)) == FULL
    with pytest.raises(EventError) as refused:
        decode("not bytes")  # type: ignore[arg-type]
    assert refused.value.reason == "undecodable"


def test_a_tombstone_and_an_empty_value_are_refused_by_name() -> None:
    with pytest.raises(EventError) as tombstone:
        decode(None)  # type: ignore[arg-type]  # what Kafka hands over for a null value
    assert tombstone.value.reason == "tombstone"
    with pytest.raises(EventError) as empty:
        decode(b"")
    assert (empty.value.reason, empty.value.detail) == ("undecodable", "an empty value")


def test_dead_letter_records_of_both_versions_read_as_the_newest() -> None:
    from coordinator import codec

    base = {"source_topic": "t", "source_partition": 1, "source_offset": 7, "key": b"k",
            "reason": "undecodable", "detail": "x", "consumer_group": "g", "dead_lettered_at": codec.utcnow()}
    buffer = BytesIO()
    buffer.write(bytes((codec.DEAD_LETTER_MAGIC, 1)))
    fastavro.schemaless_writer(buffer, codec.load_schema("dead_letter", 1), {**base, "value": b"old"})
    old = codec.decode_dead_letter(buffer.getvalue())
    assert (old["value"], old["headers"], old["truncated"], old["value_sha256"]) == (b"old", [], [], None)
    v2 = {**base, "value": None, "headers": [{"name": "h", "value": None}], "value_size": 0,
          "value_sha256": None, "key_size": 1, "truncated": []}
    new = codec.decode_dead_letter(codec.encode_dead_letter(v2))
    assert new["value"] is None and new["headers"] == [{"name": "h", "value": None}]


@pytest.mark.parametrize("data", [None, b"", b"\xde", b"\xce\x02", b"\xde\x02\xff\xff"])
def test_what_is_not_a_dead_letter_record_is_refused(data) -> None:
    from coordinator.codec import decode_dead_letter

    with pytest.raises(EventError):
        decode_dead_letter(data)


@pytest.mark.parametrize(
    "payload, reason, where",
    [
        ({"dataset": "raw.a", "event_id": "a\x00b"}, "invalid", "event_id"),
        ({"dataset": "raw.a", "partition": "2024-01-01\x00"}, "invalid", "partition"),
        ({"dataset": "raw.a\x00"}, "invalid", "dataset"),
        ({"dataset": "raw.a", "producer": "\x00"}, "invalid", "producer"),
        ({"dataset": "raw.a", "row_count": 2**63}, "invalid", "row_count"),
        ({"dataset": "raw.a", "row_count": True}, "invalid", "row_count"),
        ({"dataset": "raw.a", "attributes": {"k": "\udfff"}}, "invalid", "attributes"),
        ({"dataset": "raw.a", "attributes": {"\ud800": "v"}}, "invalid", "attributes"),
        ({"dataset": "raw.a", "columns": [{"name": "\ud800", "type": "int"}]}, "invalid", "columns.0.name"),
        ({"dataset": "raw.a", "error": "\ud800", "status": "failed"}, "invalid", "error"),
    ],
)
def test_json_events_the_bus_or_the_store_could_not_take_are_refused(payload, reason, where):
    """Each of these was accepted (a 202 for POST /events) and then failed the event's encoding or
    its store's write, which ended the engine: a NUL in a field stored in a column of its own
    (PostgreSQL's text refuses it), a count beyond a long, a lone surrogate (JSON's "\\ud800")."""
    from coordinator.codec import event_from_json

    with pytest.raises(EventError) as refused:
        event_from_json(payload)
    assert refused.value.reason == reason and refused.value.detail.startswith(f"{where}:"), refused.value
    assert event_from_json({"dataset": "raw.a", "row_count": 2**63 - 1}).row_count == 2**63 - 1


def test_nul_characters_outside_the_key_fields_and_real_unicode_round_trip():
    event = CompletionEvent(
        dataset="raw.a", attributes={"k": "a\x00b", "é": "😀"}, location="s3://x\x00", row_count=0
    )
    assert decode(encode(event)) == event
