"""A direct reader and writer for the current completion-event schema: the bus's hot paths.

fastavro reads any schema, and the codec uses it for every other case (older versions, schema
resolution, registry writers, encoding). For the one layout nearly every message has — the
current version, written by this project — this reader walks the bytes straight into the
event's fields, several times faster than a generic reader plus pydantic construction (see
bench/bus.py). It is only used when `matches(schema)` confirms the schema file is the layout
it was written for, and tests/events check it against fastavro on valid and fuzzed input:
whatever it accepts, fastavro accepts with the same result.

Every reading failure is a ValueError/IndexError/UnicodeDecodeError/OverflowError; the codec
turns them into EventError("undecodable"). The writer produces the very bytes fastavro would
(checked on generated events) at a third of the cost, for the publishers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.events import Status

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SUCCEEDED, _FAILED = Status.SUCCEEDED, Status.FAILED
_INT64 = 1 << 63

# The layout read_event understands: (field name, Avro type in canonical JSON form).
LAYOUT = [
    ("event_id", "string"),
    ("dataset", "string"),
    ("partition", ["null", "string"]),
    ("status", {"type": "enum", "name": "coordinator.events.Status", "symbols": ["succeeded", "failed"]}),
    ("producer", "string"),
    ("producer_run_id", ["null", "string"]),
    ("produced_at", {"type": "long", "logicalType": "timestamp-micros"}),
    ("row_count", ["null", "long"]),
    ("location", ["null", "string"]),
    (
        "columns",
        [
            "null",
            {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "coordinator.events.Column",
                    "fields": [
                        {"name": "name", "type": "string"},
                        {"name": "type", "type": "string"},
                        {"name": "nullable", "type": "boolean"},
                    ],
                },
            },
        ],
    ),
    ("attributes", {"type": "map", "values": "string"}),
    ("error", ["null", "string"]),
]
_KEEP = {"type", "name", "symbols", "items", "values", "fields", "logicalType"}


def _shape(schema: Any) -> Any:
    """A parsed schema reduced to what decides the binary layout (no docs, defaults, aliases)."""
    if isinstance(schema, list):
        return [_shape(s) for s in schema]
    if isinstance(schema, dict):
        out = {k: _shape(v) for k, v in schema.items() if k in _KEEP and k != "fields"}
        if "fields" in schema:
            out["fields"] = [{"name": f["name"], "type": _shape(f["type"])} for f in schema["fields"]]
        return out
    return schema


def matches(schema: dict[str, Any]) -> bool:
    """True when `schema` (parsed by fastavro) has exactly the layout read_event reads."""
    return [(f["name"], _shape(f["type"])) for f in schema.get("fields", [])] == LAYOUT


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    value = (n >> 1) ^ -(n & 1)
    if not -_INT64 <= value < _INT64:
        raise ValueError("long out of range")
    return value, pos


def _str(buf: bytes, pos: int) -> tuple[str, int]:
    b = buf[pos]
    if b < 0x80:  # lengths below 64 fit in one byte: the common case, inlined
        n = (b >> 1) ^ -(b & 1)
        pos += 1
    else:
        n, pos = _long(buf, pos)
    end = pos + n
    if n < 0 or end > len(buf):
        raise ValueError("string runs past the end")
    return buf[pos:end].decode(), end


def _opt_str(buf: bytes, pos: int) -> tuple[str | None, int]:
    b = buf[pos]
    if b == 0:
        return None, pos + 1
    if b != 2:
        raise ValueError("union index out of range")
    return _str(buf, pos + 1)


def _block_count(buf: bytes, pos: int) -> tuple[int, int]:
    count, pos = _long(buf, pos)
    if count < 0:  # a negative count is followed by the block's size in bytes
        count = -count
        _, pos = _long(buf, pos)
    return count, pos


def read_event(buf: bytes, pos: int) -> tuple[dict[str, Any], list[tuple[str, str, bool]] | None, int]:
    """(the event's fields but columns, its columns as (name, type, nullable) or None, end position)."""
    event_id, pos = _str(buf, pos)
    dataset, pos = _str(buf, pos)
    partition, pos = _opt_str(buf, pos)
    status = buf[pos]
    pos += 1
    if status > 2 or status & 1:
        raise ValueError("enum index out of range")
    producer, pos = _str(buf, pos)
    run_id, pos = _opt_str(buf, pos)
    micros, pos = _long(buf, pos)
    produced_at = _EPOCH + timedelta(microseconds=micros)
    union = buf[pos]
    pos += 1
    if union == 0:
        row_count = None
    elif union == 2:
        row_count, pos = _long(buf, pos)
    else:
        raise ValueError("union index out of range")
    location, pos = _opt_str(buf, pos)
    union = buf[pos]
    pos += 1
    columns: list[tuple[str, str, bool]] | None
    if union == 0:
        columns = None
    elif union == 2:
        columns = []
        count, pos = _block_count(buf, pos)
        while count:
            for _ in range(count):
                name, pos = _str(buf, pos)
                type_, pos = _str(buf, pos)
                flag = buf[pos]
                pos += 1
                if flag > 1:
                    raise ValueError("boolean is neither 0 nor 1")
                columns.append((name, type_, flag == 1))
            count, pos = _block_count(buf, pos)
    else:
        raise ValueError("union index out of range")
    attributes: dict[str, str] = {}
    count, pos = _block_count(buf, pos)
    while count:
        for _ in range(count):
            key, pos = _str(buf, pos)
            attributes[key], pos = _str(buf, pos)
        count, pos = _block_count(buf, pos)
    error, pos = _opt_str(buf, pos)
    values = {  # the model's fields, in its order (see codec._finish)
        "event_id": event_id,
        "dataset": dataset,
        "partition": partition,
        "status": _SUCCEEDED if status == 0 else _FAILED,
        "producer": producer,
        "producer_run_id": run_id,
        "produced_at": produced_at,
        "row_count": row_count,
        "location": location,
        "columns": None,
        "error": error,
        "attributes": attributes,
    }
    return values, columns, pos


# --------------------------------------------------------------------------- writing
def _put_long(out: bytearray, n: int) -> None:
    if not -_INT64 <= n < _INT64:
        raise ValueError(f"{n} does not fit an Avro long")
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _put_str(out: bytearray, text: str) -> None:
    data = text.encode()
    size = len(data)
    if size < 64:  # a one-byte length (zigzag: 2n): nearly every string, without a call
        out.append(size << 1)
    else:
        _put_long(out, size)
    out += data


def _put_opt_str(out: bytearray, text: str | None) -> None:
    if text is None:
        out.append(0)
    else:
        out.append(2)
        _put_str(out, text)


def write_event(out: bytearray, event: Any) -> None:
    """Append the Avro binary of a CompletionEvent in the LAYOUT above (the same bytes fastavro
    writes; tests/events check it). Raises ValueError (UnicodeEncodeError included) when a
    value cannot be written."""
    _put_str(out, event.event_id)
    _put_str(out, event.dataset)
    _put_opt_str(out, event.partition)
    out.append(0 if event.status is _SUCCEEDED else 2)
    _put_str(out, event.producer)
    _put_opt_str(out, event.producer_run_id)
    when = event.produced_at
    if when.tzinfo is None:  # as fastavro does: a time without a zone is UTC
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    _put_long(out, (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)
    if event.row_count is None:
        out.append(0)
    else:
        out.append(2)
        _put_long(out, event.row_count)
    _put_opt_str(out, event.location)
    columns = event.columns
    if columns is None:
        out.append(0)
    else:
        out.append(2)
        if columns:
            _put_long(out, len(columns))
            for column in columns:
                _put_str(out, column.name)
                _put_str(out, column.type)
                out.append(1 if column.nullable else 0)
        out.append(0)
    attributes = event.attributes
    if attributes:
        _put_long(out, len(attributes))
        for key, value in attributes.items():
            _put_str(out, key)
            _put_str(out, value)
    out.append(0)
    _put_opt_str(out, event.error)
