"""What a name must be to stay the same name in each product database a push writes to.

Checked twice: when the spec loads (the reverse_etl settings' table, schema and mapped column
names, so a mistake is a spec error naming the job) and when a push starts (the column names
that come from the source itself). Pure: no driver is imported.

    PostgreSQL      at most 63 bytes in UTF-8 (NAMEDATALEN - 1): a longer name is cut
                    silently, so two long names with one beginning are one table; no NUL
    MariaDB/MySQL   at most 64 characters; characters of the Basic Multilingual Plane only
                    (U+0001-U+FFFF: an emoji is refused by the server, whose data dictionary
                    is utf8mb3); no space at the end of a table or column name; no NUL
    SQLite          no NUL
    Kafka           a topic: at most 249 of ASCII letters, digits, '.', '_', '-'; not "." or "..";
                    with Avro values, each field [A-Za-z_][A-Za-z0-9_]* (the Avro spec's names:
                    fastavro writes others, and Java or other readers then refuse the schema)

Every other character (quotes, backticks, `%`, spaces, semicolons, non-Latin letters) is
allowed and kept exactly: the adapters quote every name and never pass one through a
%-format (see push/destinations/mysql.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

PG_MAX_BYTES = 63
MYSQL_MAX_CHARS = 64
KAFKA_MAX_CHARS = 249
_KAFKA_TOPIC = re.compile(r"[A-Za-z0-9._-]+")
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

DIALECTS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "kafka": "kafka",
}


def dialect_of(url: str) -> str:
    """postgresql | mysql | sqlite | kafka for a destination URL (its scheme, driver part
    dropped: mysql+pymysql is mysql); "" for a scheme no destination has."""
    return DIALECTS.get(url.split(":", 1)[0].split("+", 1)[0].lower(), "")


def kafka_topic(url: str) -> tuple[str, str | None]:
    """(topic, bootstrap servers or None) of kafka://topic or kafka://host:port/topic."""
    parts = urlsplit(url)
    if parts.path.strip("/"):
        return parts.path.strip("/"), parts.netloc
    return parts.netloc, None


def name_problems(dialect: str, names: Iterable[tuple[str, str]]) -> list[str]:
    """One message per (what, name) pair — what is "table", "schema", "column" or "topic" —
    that `dialect` would not keep as given; empty when all fit."""
    return [p for what, name in names for p in _problems(dialect, what, name)]


def _problems(dialect: str, what: str, name: str) -> Iterable[str]:
    shown = repr(name) if len(name) <= 80 else repr(name[:60] + "…")
    if not name:
        yield f"the {what} name is empty"
        return
    if "\x00" in name and dialect in ("postgresql", "mysql", "sqlite"):
        yield f"{what} name {shown} holds a NUL character, which no SQL database allows in a name"
    if dialect == "postgresql":
        size = len(name.encode("utf-8"))
        if size > PG_MAX_BYTES:
            yield (
                f"{what} name {shown} is {size} bytes in UTF-8; PostgreSQL keeps {PG_MAX_BYTES} "
                "and cuts the rest silently (two names alike in their first 63 bytes would be one)"
            )
    elif dialect == "mysql":
        if len(name) > MYSQL_MAX_CHARS:
            yield f"{what} name {shown} is {len(name)} characters; MariaDB/MySQL allow {MYSQL_MAX_CHARS}"
        wide = sorted({ch for ch in name if ord(ch) > 0xFFFF})
        if wide:
            yield (
                f"{what} name {shown} holds {''.join(wide)!r}: MariaDB/MySQL names take characters "
                "up to U+FFFF only (no emoji or other supplementary characters)"
            )
        if what in ("table", "column", "schema") and name != name.rstrip(" "):
            yield f"{what} name {shown} ends with a space, which MariaDB/MySQL do not allow"
    elif dialect == "avro" and not _AVRO_NAME.fullmatch(name):
        yield f"{what} name {shown} is not an Avro name (a letter or _, then letters, digits or _)"
    elif dialect == "kafka" and (
        len(name) > KAFKA_MAX_CHARS or not _KAFKA_TOPIC.fullmatch(name) or name in (".", "..")
    ):
        yield (
            f"topic name {shown} is not a Kafka topic name (at most {KAFKA_MAX_CHARS} of "
            "ASCII letters, digits, '.', '_' and '-')"
        )


def destination_names(
    url: str,
    table: str | None,
    schema: str | None,
    columns: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """The (what, name) pairs a push to `url` writes: the table (or topic), schema and columns."""
    if dialect_of(url) == "kafka":
        return [("topic", kafka_topic(url)[0])]
    names = [("table", table)] if table is not None else []
    if schema is not None:
        names.append(("schema", schema))
    return names + [("column", c) for c in columns]
