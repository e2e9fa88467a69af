"""Destination columns and types: the check before any write, per-value rejects, and casts.

Every destination adapter describes its table as a `DestTable` of `DestColumn`s, each put in a
type family. `check_columns` compares the (mapped) source schema with it and lists every
problem at once; `value_problems` finds, vectorised, the rows whose values the destination
type cannot hold (those rows are rejected, not the whole push).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

# Which source families each destination family accepts (assignment-cast safe).
ACCEPTS: dict[str, frozenset[str]] = {
    "int": frozenset({"int", "bool"}),
    "float": frozenset({"int", "float", "decimal"}),
    "decimal": frozenset({"int", "float", "decimal"}),
    "string": frozenset({"string"}),
    "json": frozenset({"string"}),
    "bool": frozenset({"bool"}),
    "date": frozenset({"date"}),
    "timestamp": frozenset({"timestamp", "date"}),
    "time": frozenset({"time"}),
    "bytes": frozenset({"bytes"}),
}
ANY = "any"  # SQLite columns without a declared type hold anything


def _outside(allowed: str) -> str:
    """An RE2 class of every character not in `allowed`."""
    return "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(set(allowed))) + "]"


# MariaDB/MySQL character sets narrower than Unicode, as the characters they cannot hold (a
# value with one fails the statement in strict mode, or is stored as "?" otherwise): their
# latin1 is Windows-1252 whose five unassigned bytes keep the C1 code points
_CP1252 = "".join(bytes([b]).decode("cp1252", errors="ignore") for b in range(256)) + "\x81\x8d\x8f\x90\x9d"
CHARSET_OUTSIDE = {
    "latin1": _outside(_CP1252),
    "ascii": r"[^\x{0}-\x{7f}]",
    "utf8mb3": r"[^\x{0}-\x{ffff}]",
    "utf8": r"[^\x{0}-\x{ffff}]",
    "ucs2": r"[^\x{0}-\x{ffff}]",
}


@dataclass(frozen=True)
class DestColumn:
    name: str
    family: str  # a key of ACCEPTS, or "any", or "other" (accepts nothing)
    sql_type: str  # the database's own spelling, for messages
    nullable: bool = True
    has_default: bool = False
    int_bits: int | None = None  # 8/16/24/32/64 for integer columns
    unsigned: bool = False
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    charset: str | None = None  # MariaDB/MySQL: a string column's character set


@dataclass(frozen=True)
class DestTable:
    name: str
    columns: dict[str, DestColumn]
    unique_keys: list[frozenset[str]] = field(default_factory=list)


def arrow_family(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytes"
    if pa.types.is_null(t):
        return "null"
    return "other"


def normalize(table: pa.Table) -> pa.Table:
    """Cast to one canonical Arrow type per family, so hashes and writers see stable types."""
    fields = []
    for f in table.schema:
        fam, t = arrow_family(f.type), f.type
        target = {
            "int": pa.int64(),
            "float": pa.float64(),
            "string": pa.string(),
            "date": pa.date32(),
            "bytes": pa.binary(),
        }.get(fam, t)
        if fam == "timestamp":
            target = pa.timestamp("us", t.tz)
        fields.append(pa.field(f.name, target))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)


def check_columns(
    source: pa.Schema, dest: DestTable, key: Sequence[str], needs_unique_key: bool
) -> list[str]:
    """Every problem that would make the push fail or write wrong data; empty when it fits."""
    problems = []
    for f in source:
        col = dest.columns.get(f.name)
        if col is None:
            problems.append(f"column {f.name!r} is missing in the destination")
            continue
        fam = arrow_family(f.type)
        if fam == "null" or col.family == ANY:
            continue
        if fam not in ACCEPTS.get(col.family, frozenset()):
            problems.append(f"column {f.name!r}: source type {f.type} cannot be written to {col.sql_type}")
    pushed = set(source.names)
    for col in dest.columns.values():
        if col.name not in pushed and not col.nullable and not col.has_default:
            problems.append(
                f"column {col.name!r} ({col.sql_type}) is NOT NULL without a default and is not pushed"
            )
    if needs_unique_key and frozenset(key) not in dest.unique_keys:
        problems.append(f"no primary key or unique index on ({', '.join(key)})")
    return problems


def value_problems(
    table: pa.Table, dest: DestTable, nan_ok: bool = True, nul_ok: bool = True
) -> Iterator[tuple[str, pa.Array]]:
    """(reason, boolean mask of offending rows) for values the destination cannot hold."""
    for name in table.column_names:
        col, arr = dest.columns.get(name), table.column(name)
        if col is None:
            continue
        fam = arrow_family(arr.type)
        if not col.nullable and arr.null_count:
            yield f"null in NOT NULL column {name}", pc.is_null(arr)
        if col.family == "int" and col.int_bits and col.int_bits < 64 and fam == "int":
            lo, hi = (
                (0, 2**col.int_bits - 1)
                if col.unsigned
                else (-(2 ** (col.int_bits - 1)), 2 ** (col.int_bits - 1) - 1)
            )
            yield (
                f"value out of range for {name} ({col.sql_type})",
                _or(pc.less(arr, lo), pc.greater(arr, hi)),
            )
        elif col.family == "int" and col.unsigned and fam == "int":
            yield f"negative value for {name} ({col.sql_type})", pc.less(arr, 0)
        if col.family in ("string", "json") and fam == "string":
            if col.max_length is not None:
                yield (
                    f"value too long for {name} ({col.sql_type})",
                    pc.greater(pc.utf8_length(arr), col.max_length),
                )
            if not nul_ok:
                yield f"NUL character in {name}", pc.match_substring(arr, "\x00")  # as record_problems
            outside = CHARSET_OUTSIDE.get((col.charset or "").lower())
            if outside is not None:
                yield (
                    f"characters the character set {col.charset} of {name} cannot hold",
                    pc.match_substring_regex(arr, outside),
                )
        if col.family == "decimal" and col.precision is not None and fam in ("int", "float", "decimal"):
            limit = 10 ** (col.precision - (col.scale or 0))
            as_float = pc.cast(arr, pa.float64())
            yield (
                f"value out of range for {name} ({col.sql_type})",
                _or(pc.greater_equal(pc.abs(as_float), limit), pc.invert(pc.is_finite(as_float))),
            )
        elif fam == "float" and not nan_ok:
            yield non_finite(name, arr)


def non_finite(name: str, arr: pa.ChunkedArray) -> tuple[str, pa.Array]:
    return f"NaN or infinity in {name}", pc.invert(pc.is_finite(arr))


def record_problems(table: pa.Table, nan_ok: bool, nul_ok: bool) -> Iterator[tuple[str, pa.Array]]:
    """With no table to describe (a topic, a table the push creates): the values the destination
    cannot hold whatever the column's type."""
    for name in table.column_names:
        arr, fam = table.column(name), arrow_family(table.column(name).type)
        if fam == "float" and not nan_ok:
            yield non_finite(name, arr)
        if fam == "string" and not nul_ok:
            yield f"NUL character in {name}", pc.match_substring(arr, "\x00")


def _or(a: pa.Array, b: pa.Array) -> pa.Array:
    return pc.fill_null(pc.or_(a, b), False)
