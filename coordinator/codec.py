"""Completion events to bytes and back: Avro (fastavro) behind a 2-byte header.

Wire format of a value on the bus::

    0xCE <version:uint8> <Avro binary of topics/completion_event.v<version>.avsc>

The header names the writer's schema version, so a consumer reads old and new versions alike
(Avro schema resolution against the newest schema it knows). When a schema registry is
configured, the Confluent framing ``0x00 <schema id:uint32 big-endian> <Avro binary>`` is
accepted too; the writer schema then comes from the registry (see `SchemaRegistry`).

Every failure is an `EventError` with a short `reason`: tombstone (a null value),
undecodable (an empty value included), unknown_schema_version, missing_field, wrong_type,
oversized or invalid. Nothing else escapes `decode`, whatever the
bytes; tests/events fuzz that promise.

Decoding is on the consumer's hot path. Messages in the current version are read by a direct
reader (coordinator/avrofast.py, checked against fastavro by the tests), everything else by
fastavro. Neither goes through pydantic validation: the Avro types are already checked, the
few constraints Avro cannot express are checked by hand in `_finish`, and the model is built
without a validation pass (`_construct`), with repeated column lists shared.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError
from pydantic import ValidationError

from coordinator.avrofast import matches, read_event, write_event
from coordinator.errors import EventError, SchemaVersionError
from coordinator.events import Column, CompletionEvent, Status, nul_problem

EVENT_MAGIC = 0xCE
DEAD_LETTER_MAGIC = 0xDE
CONFLUENT_MAGIC = 0x00
CURRENT_VERSION = 2
_EVENT_SCHEMA = "completion_event"
_DEAD_LETTER_SCHEMA = "dead_letter"

# The model's length limits, checked by hand after fastavro (see module docstring).
_MAX_LEN = {
    "event_id": 200,
    "dataset": 500,
    "partition": 200,
    "producer": 200,
    "producer_run_id": 500,
    "location": 4000,
    "error": 20000,
}
_SHORTEST_LIMIT = min(_MAX_LEN.values())


def topics_dir() -> Path:
    """The folder of .avsc files: beside the package in a checkout, or ./topics where installed."""
    beside = Path(__file__).resolve().parent.parent / "topics"
    return beside if beside.is_dir() else Path.cwd() / "topics"


@cache
def load_schema(name: str, version: int) -> dict[str, Any]:
    """The parsed schema `topics/<name>.v<version>.avsc`; raises SchemaVersionError when absent."""
    path = topics_dir() / f"{name}.v{version}.avsc"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise SchemaVersionError("unknown_schema_version", f"{name} v{version}") from None
    return fastavro.parse_schema(raw, named_schemas={})


def schema_versions(name: str = _EVENT_SCHEMA) -> list[int]:
    """Every version of a schema kept in topics/, oldest first."""
    found = []
    for path in topics_dir().glob(f"{name}.v*.avsc"):
        suffix = path.name[len(name) + 2 : -len(".avsc")]
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


# --------------------------------------------------------------------------- schema registry
class SchemaRegistry:
    """Writer schemas by Confluent schema id. This base serves a fixed mapping (tests, air-gapped
    deployments); `HttpSchemaRegistry` asks a Confluent-compatible registry and caches the answer."""

    def __init__(self, schemas: Mapping[int, Mapping[str, Any] | str] | None = None) -> None:
        self._parsed: dict[int, dict[str, Any]] = {}
        for schema_id, schema in (schemas or {}).items():
            self._parsed[schema_id] = self._parse(schema)

    @staticmethod
    def _parse(schema: Mapping[str, Any] | str) -> dict[str, Any]:
        raw = json.loads(schema) if isinstance(schema, str) else dict(schema)
        return fastavro.parse_schema(raw, named_schemas={})

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        try:
            return self._parsed[schema_id]
        except KeyError:
            schema = self._fetch(schema_id)
            if schema is None:
                raise SchemaVersionError("unknown_schema_version", f"schema id {schema_id}") from None
            try:
                parsed = self._parse(schema)
            except Exception as exc:  # a registry answer that is not an Avro schema
                raise SchemaVersionError("unknown_schema_version", f"schema id {schema_id}: {exc}") from None
            self._parsed[schema_id] = parsed
            return parsed

    def _fetch(self, schema_id: int) -> str | None:
        return None


class HttpSchemaRegistry(SchemaRegistry):
    """A Confluent-compatible registry at `url` (GET /schemas/ids/{id}); answers are cached."""

    def __init__(
        self, url: str, schemas: Mapping[int, Mapping[str, Any] | str] | None = None, timeout: float = 10.0
    ) -> None:
        super().__init__(schemas)
        self.url, self.timeout = url.rstrip("/"), timeout

    def _fetch(self, schema_id: int) -> str | None:
        import httpx

        try:
            response = httpx.get(f"{self.url}/schemas/ids/{schema_id}", timeout=self.timeout)
        except httpx.HTTPError as exc:
            # Not the message's fault: the caller must not dead-letter it, so this is not an EventError.
            from coordinator.errors import BusError

            raise BusError(f"schema registry {self.url} unreachable: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            from coordinator.errors import BusError

            raise BusError(f"schema registry {self.url} answered {response.status_code} for id {schema_id}")
        return response.json()["schema"]


# --------------------------------------------------------------------------- the codec
_new = object.__new__
_set = object.__setattr__
_EVENT_FIELDS = set(CompletionEvent.model_fields)
_COLUMN_FIELDS = set(Column.model_fields)
_column_cache: dict[tuple[tuple[str, str, bool], ...], tuple[Column, ...]] = {}
_COLUMN_CACHE_MAX = 4096


def _construct(cls: type[Any], values: dict[str, Any], fields_set: set[str]) -> Any:
    """What `model_construct` does, minus its per-field Python loop: every field is in `values`.
    Safe to share `fields_set`: the models are frozen and pydantic copies it on model_copy."""
    obj = _new(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", fields_set)
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _columns(columns: list[tuple[str, str, bool]]) -> tuple[Column, ...]:
    """Column tuples, cached: one dataset's events repeat the same columns, and Column is frozen."""
    key = tuple(columns)
    found = _column_cache.get(key)
    if found is None:
        if len(_column_cache) >= _COLUMN_CACHE_MAX:
            _column_cache.clear()
        found = tuple(
            _construct(Column, {"name": n, "type": t, "nullable": b}, _COLUMN_FIELDS) for n, t, b in columns
        )
        _column_cache[key] = found
    return found


def _finish(
    values: dict[str, Any], columns: list[tuple[str, str, bool]] | None, size: int | None = None
) -> CompletionEvent:
    """The event from type-checked `values` (every model field, in order; Status as enum);
    enforces what Avro cannot say (lengths, ranges) and attaches the columns. `size`, the bytes
    the values were read from: no string is longer (in characters) than that, so below the
    shortest limit the lengths need no look."""
    if size is None or size > _SHORTEST_LIMIT:
        for name, limit in _MAX_LEN.items():
            value = values[name]
            if value is not None and len(value) > limit:
                raise EventError("invalid", f"{name} longer than {limit}")
    if not values["event_id"]:
        raise EventError("invalid", "empty event_id")
    if not values["dataset"]:
        raise EventError("invalid", "empty dataset")
    nul = nul_problem(values)
    if nul is not None:
        raise EventError("invalid", nul)
    row_count = values["row_count"]
    if row_count is not None and row_count < 0:
        raise EventError("invalid", "negative row_count")
    if columns is not None:
        values["columns"] = _columns(columns)
    return _construct(CompletionEvent, values, _EVENT_FIELDS)


def _checked(record: dict[str, Any]) -> CompletionEvent:
    """The event from a record fastavro has read (and type-checked)."""
    columns = record["columns"]
    if columns is not None:
        columns = [(c["name"], c["type"], c["nullable"]) for c in columns]
    produced_at = record["produced_at"]
    if produced_at.tzinfo is None:  # fastavro gives UTC-aware datetimes; be sure
        produced_at = produced_at.replace(tzinfo=UTC)
    return _finish(
        {
            "event_id": record["event_id"],
            "dataset": record["dataset"],
            "partition": record["partition"],
            "status": Status.SUCCEEDED if record["status"] == "succeeded" else Status.FAILED,
            "producer": record["producer"],
            "producer_run_id": record["producer_run_id"],
            "produced_at": produced_at,
            "row_count": record["row_count"],
            "location": record["location"],
            "columns": None,
            "error": record.get("error"),
            "attributes": record["attributes"],
        },
        columns,
    )


def _record(event: CompletionEvent) -> dict[str, Any]:
    columns = event.columns
    return {
        "event_id": event.event_id,
        "dataset": event.dataset,
        "partition": event.partition,
        "status": event.status.value,
        "producer": event.producer,
        "producer_run_id": event.producer_run_id,
        "produced_at": event.produced_at,
        "row_count": event.row_count,
        "location": event.location,
        "columns": None
        if columns is None
        else [{"name": c.name, "type": c.type, "nullable": c.nullable} for c in columns],
        "attributes": event.attributes,
        "error": event.error,
    }


def _resolution_reason(exc: SchemaResolutionError) -> str:
    text = str(exc)
    return "missing_field" if "No default value" in text or "missing" in text.lower() else "wrong_type"


class Codec:
    """Encodes with the current schema version; decodes every version kept in topics/.

    `registry` enables the Confluent framing; without it a value starting with 0x00 is
    undecodable. `max_bytes` bounds a value's size both ways.
    """

    def __init__(
        self,
        *,
        max_bytes: int = 1_000_000,
        registry: SchemaRegistry | None = None,
        write_version: int = CURRENT_VERSION,
        fast: bool = True,
    ) -> None:
        self.max_bytes, self.registry, self.write_version = max_bytes, registry, write_version
        self._reader = load_schema(_EVENT_SCHEMA, CURRENT_VERSION)
        # The direct reader (avrofast) for the current version; fastavro for everything else.
        self._fast = fast and matches(self._reader)
        self._fast_write = self._fast and write_version == CURRENT_VERSION
        self._writer = load_schema(_EVENT_SCHEMA, write_version)
        self._header = bytes((EVENT_MAGIC, write_version))
        self._resolved: dict[int, Callable[[BytesIO], dict[str, Any]]] = {}
        self._unknown: set[int] = set()  # versions without a schema file: no disk lookup per message

    # ---------------------------------------------------------------- encode
    def encode(self, event: CompletionEvent) -> bytes:
        if self._fast_write:
            out = bytearray(self._header)
            try:
                write_event(out, event)
            except (ValueError, TypeError, AttributeError) as exc:
                raise EventError("invalid", f"cannot encode: {exc}") from exc
            data = bytes(out)
        else:
            buffer = BytesIO()
            buffer.write(self._header)
            self._write(buffer, self._writer, event)
            data = buffer.getvalue()
        if len(data) > self.max_bytes:
            raise EventError("oversized", f"{len(data)} bytes > {self.max_bytes}")
        return data

    def encode_confluent(
        self, event: CompletionEvent, schema_id: int, writer_schema: Mapping[str, Any] | None = None
    ) -> bytes:
        """Confluent framing for a schema the registry knows as `schema_id` (current schema by default)."""
        schema = SchemaRegistry._parse(writer_schema) if writer_schema is not None else self._writer
        buffer = BytesIO()
        buffer.write(struct.pack(">bI", CONFLUENT_MAGIC, schema_id))
        self._write(buffer, schema, event)
        return buffer.getvalue()

    @staticmethod
    def _write(buffer: BytesIO, schema: dict[str, Any], event: CompletionEvent) -> None:
        try:
            fastavro.schemaless_writer(buffer, schema, _record(event))
        except (ValueError, TypeError, OverflowError) as exc:
            raise EventError("invalid", f"cannot encode: {exc}") from exc

    # ---------------------------------------------------------------- decode
    def decode(self, data: bytes) -> CompletionEvent:
        if type(data) is not bytes:
            if data is None:  # a Kafka tombstone: a key with a null value
                raise EventError("tombstone", "a null value (tombstone); a completion event is never null")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise EventError("undecodable", f"expected bytes, got {type(data).__name__}")
            data = bytes(data)
        size = len(data)
        if size > self.max_bytes:
            raise EventError("oversized", f"{size} bytes > {self.max_bytes}")
        if size < 2:
            raise EventError("undecodable", "an empty value" if not size else "shorter than the header")
        magic = data[0]
        if magic == EVENT_MAGIC and data[1] == CURRENT_VERSION and self._fast:
            try:
                fields, columns, end = read_event(data, 2)
            except (ValueError, IndexError, OverflowError) as exc:  # UnicodeDecodeError is a ValueError
                raise EventError("undecodable", f"{type(exc).__name__}: {str(exc)[:200]}") from None
            if end != size:
                raise EventError("undecodable", f"{size - end} trailing bytes")
            return _finish(fields, columns, size)
        if magic == EVENT_MAGIC:
            read, start = self._reader_for_version(data[1]), 2
        elif magic == CONFLUENT_MAGIC and self.registry is not None:
            if size < 5:
                raise EventError("undecodable", "shorter than the Confluent header")
            read, start = self._reader_for_schema_id(int.from_bytes(data[1:5], "big")), 5
        else:
            raise EventError("undecodable", f"unknown header byte 0x{magic:02x}")
        buffer = BytesIO(data)
        buffer.seek(start)
        try:
            record = read(buffer)
        except EventError:
            raise
        except SchemaResolutionError as exc:
            raise EventError(_resolution_reason(exc), str(exc)[:300]) from None
        except Exception as exc:  # fastavro raises many kinds on garbage; all mean the same here
            raise EventError("undecodable", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if buffer.tell() != size:
            raise EventError("undecodable", f"{size - buffer.tell()} trailing bytes")
        if not isinstance(record, dict):
            raise EventError("wrong_type", "writer schema is not a record")
        try:
            return _checked(record)
        except EventError:
            raise
        except KeyError as exc:
            raise EventError("missing_field", f"{exc.args[0]}") from None
        except (TypeError, AttributeError, ValueError) as exc:
            raise EventError("wrong_type", str(exc)[:200]) from None

    def _reader_for_version(self, version: int) -> Callable[[BytesIO], dict[str, Any]]:
        read = self._resolved.get(version)
        if read is None:
            if version in self._unknown:
                raise SchemaVersionError("unknown_schema_version", f"schema version {version}")
            try:
                writer = load_schema(_EVENT_SCHEMA, version)
            except SchemaVersionError:
                self._unknown.add(version)
                raise SchemaVersionError("unknown_schema_version", f"schema version {version}") from None
            read = self._make_reader(writer)
            self._resolved[version] = read
        return read

    def _reader_for_schema_id(self, schema_id: int) -> Callable[[BytesIO], dict[str, Any]]:
        key = -1 - schema_id  # registry ids share the cache with versions, kept apart by sign
        read = self._resolved.get(key)
        if read is None:
            assert self.registry is not None
            read = self._make_reader(self.registry.writer_schema(schema_id))
            self._resolved[key] = read
        return read

    def _make_reader(self, writer: dict[str, Any]) -> Callable[[BytesIO], dict[str, Any]]:
        reader = self._reader
        if writer == reader:
            return lambda buffer: fastavro.schemaless_reader(buffer, writer, None)
        return lambda buffer: fastavro.schemaless_reader(buffer, writer, reader)


def codec_for(settings: Any, registry: SchemaRegistry | None = None) -> Codec:
    """The codec a Settings object asks for: size limit, and the registry when one is configured."""
    if registry is None and settings.schema_registry_url:
        registry = HttpSchemaRegistry(settings.schema_registry_url)
    return Codec(max_bytes=settings.max_event_bytes, registry=registry)


_default: Codec | None = None


def _default_codec() -> Codec:
    global _default
    if _default is None:
        _default = Codec()
    return _default


def encode(event: CompletionEvent) -> bytes:
    """The event as bytes in the current schema version, with its header."""
    return _default_codec().encode(event)


def decode(data: bytes) -> CompletionEvent:
    """The event in `data` (any kept schema version); raises EventError with a reason."""
    return _default_codec().decode(data)


# --------------------------------------------------------------------------- JSON (HTTP, files)
_WRONG_TYPE_HINTS = ("_type", "_parsing", "enum", "literal_error", "is_instance_of", "model_attributes_type")


def event_from_json(data: bytes | str | Mapping[str, Any]) -> CompletionEvent:
    """A completion event from JSON, fully validated by pydantic; EventError with a reason otherwise."""
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventError("undecodable", f"not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise EventError("wrong_type", "a completion event is a JSON object")
    try:
        event = CompletionEvent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        kind = first["type"]
        if kind == "missing":
            reason = "missing_field"
        elif any(hint in kind for hint in _WRONG_TYPE_HINTS):
            reason = "wrong_type"
        else:
            reason = "invalid"
        raise EventError(reason, f"{where}: {first['msg']}") from None
    if event.produced_at.tzinfo is None:  # a time without a zone is taken as UTC, as on the bus
        event = event.model_copy(update={"produced_at": event.produced_at.replace(tzinfo=UTC)})
    return event


# --------------------------------------------------------------------------- dead letters
DEAD_LETTER_VERSION = 2
_DL_HEADER = bytes((DEAD_LETTER_MAGIC, DEAD_LETTER_VERSION))


def encode_dead_letter(record: Mapping[str, Any]) -> bytes:
    """A dead-letter record (topics/dead_letter.v2.avsc) as bytes with its header."""
    buffer = BytesIO()
    buffer.write(_DL_HEADER)
    fastavro.schemaless_writer(buffer, load_schema(_DEAD_LETTER_SCHEMA, DEAD_LETTER_VERSION), dict(record))
    return buffer.getvalue()


def decode_dead_letter(data: bytes) -> dict[str, Any]:
    """The dead-letter record in `data`; raises EventError when it is not one."""
    if not isinstance(data, bytes) or len(data) < 2 or data[0] != DEAD_LETTER_MAGIC:  # None: a tombstone
        raise EventError("undecodable", "not a dead-letter record")
    schema = load_schema(_DEAD_LETTER_SCHEMA, data[1])
    newest = None if data[1] == DEAD_LETTER_VERSION else load_schema(_DEAD_LETTER_SCHEMA, DEAD_LETTER_VERSION)
    buffer = BytesIO(data)
    buffer.seek(2)
    try:  # an older record is read as the newest version (its new fields take their defaults)
        return fastavro.schemaless_reader(buffer, schema, newest)
    except Exception as exc:
        raise EventError("undecodable", f"{type(exc).__name__}: {exc}") from None


def utcnow() -> datetime:
    return datetime.now(UTC)
