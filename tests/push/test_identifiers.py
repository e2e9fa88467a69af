"""Names and characters on every destination: each name stays exactly the name given, or is
refused when the spec loads (naming the job and the name); MariaDB tables the push creates hold
any Unicode value, also in a latin1 database; a failed first push leaves no table behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pytest
import sqlalchemy as sa

from coordinator.errors import PushError, SpecError
from coordinator.identifiers import name_problems
from coordinator.push import DestinationSettings, push
from coordinator.spec.loader import parse_spec
from tests.conftest import missing, unique
from tests.push.conftest import Backend

PG_63 = "é" * 31 + "x"  # 63 bytes in UTF-8, 32 characters
MY_64 = ("a%b'`\" %s %(x)s 100%% ; -- " * 3)[:63] + "z"  # 64 characters, every one kept
NAMES = {  # columns, by what they try
    "percent": "a%b",
    "format": "%s %(x)s %%",
    "quotes": 'it\'s "q" `b`',
    "space": "with space",
    "letters": "表 Ŝcore",
}
EMOJI = "score 😀"  # PostgreSQL and SQLite keep it; MariaDB/MySQL names cannot hold it


def _catalog_columns(b: Backend, table: str) -> list[str]:
    if b.name == "mysql":  # SQLAlchemy reflects from SHOW CREATE TABLE and keeps `` doubled
        with b.engine.connect() as conn:
            return list(
                conn.exec_driver_sql(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                    (table,),
                ).scalars()
            )
    return [c["name"] for c in sa.inspect(b.engine).get_columns(table)]


def _tables(b: Backend) -> set[str]:
    return set(sa.inspect(b.engine).get_table_names())


@pytest.mark.parametrize("limit", ["at_limit", "hostile"])
def test_names_survive_exactly(backend: Backend, state_dir: Path, limit: str) -> None:
    long_name = PG_63 if backend.name == "postgres" else MY_64
    table = long_name if limit == "at_limit" else "t%s %(x)s 100% 'q' \"d\" `b`"
    columns = {"id": "id", **{k: v for k, v in NAMES.items()}, "long": long_name}
    if backend.name != "mysql":
        columns["emoji"] = EMOJI
    n = 20
    data = pa.table(
        {"id": list(range(n)), **{k: [f"{k}{i}%s😀" for i in range(n)] for k in columns if k != "id"}}
    )
    settings = DestinationSettings(url=backend.url, table=table)
    r = push(data, settings, job="names", key=["id"], columns=columns, create_table=True, state_dir=state_dir)
    assert (r.inserted, r.full) == (n, True)
    assert table in _tables(backend)
    assert _catalog_columns(backend, table) == list(columns.values())

    changed = data.set_column(
        1, "percent", pa.array([f"new{i}" if i == 3 else f"percent{i}%s😀" for i in range(n)])
    )
    r = push(changed, settings, job="names", key=["id"], columns=columns, state_dir=state_dir)
    assert (r.updated, r.unchanged, r.full) == (1, n - 1, False)  # the marker found the same table
    rows = backend.rows(table, "id")
    assert rows[3][1] == "new3" and rows[4][-1].endswith("%s😀")


def test_too_long_or_impossible_names_are_refused_at_push_time(backend: Backend, state_dir: Path) -> None:
    bad = {"postgres": PG_63 + "y", "mysql": MY_64 + "y", "sqlite": "nul\x00inside"}[backend.name]
    table = unique("t")
    with pytest.raises(PushError) as caught:  # the column comes from the source, not the spec
        push(
            pa.table({"id": [1], bad: [1]}),
            DestinationSettings(url=backend.url, table=table),
            job="j",
            key=["id"],
            create_table=True,
            state_dir=state_dir,
        )
    assert repr(bad)[:20] in str(caught.value) and "\n" not in str(caught.value)
    assert table not in _tables(backend)


SPEC = """
datasets:
  scores: {}
  product: {}
jobs:
  push_scores:
    kind: reverse_etl
    inputs: [scores]
    outputs: [product]
    settings:
      source: {input: scores}
      destination: DEST
      key: [id]
      columns: COLUMNS
"""


def spec(url: str, table: str | None, columns: str = "{id: id}", extra: str = "") -> str:
    table_part = "" if table is None else ', table: "' + table.replace('"', '\\"') + '"'
    dest = '{url: "' + url + '"' + table_part + extra + "}"
    return SPEC.replace("DEST", dest).replace("COLUMNS", columns)


@pytest.mark.parametrize(
    ("url", "table", "columns", "extra", "expect"),
    [
        ("postgresql://h/db", "x" * 64, "{id: id}", "", "64 bytes in UTF-8; PostgreSQL keeps 63"),
        ("postgresql://h/db", "t", '{id: id, v: "' + "é" * 32 + '"}', "", "64 bytes in UTF-8"),
        ("postgresql://h/db", "t", "{id: id}", ", schema: " + "s" * 64, "schema name"),
        ("mysql://h/db", "x" * 65, "{id: id}", "", "65 characters; MariaDB/MySQL allow 64"),
        ("mysql://h/db", "t", '{id: id, v: "a😀"}', "", "up to U+FFFF only"),
        ("mariadb://h/db", "t ", "{id: id}", "", "ends with a space"),
        ("mysql+pymysql://h/db", "t", "{id: id, v: id}", "", "several source columns to 'id'"),
        ("mysql://h/db", "t", "{id: id}", ", schema: s", "`schema` has no meaning for a mysql destination"),
        ("sqlite:///x.db", "t", "{id: id}", ", format: avro", "`format` has no meaning for a sqlite"),
        ("kafka://topic", "t", "{id: id}", "", "`table` has no meaning for a kafka destination"),
        ("kafka://bad topic", None, "{id: id}", "", "not a Kafka topic name"),
        ("oracle://h/db", "t", "{id: id}", "", "unsupported destination URL scheme 'oracle'"),
        ("postgresql://h:5x/db", "t", "{id: id}", "", "port is not a port number"),
        ("mysql://h:70000/db", "t", "{id: id}", "", "port is not a port number"),
        ("sqlite://", "t", "{id: id}", "", "in-memory SQLite destination keeps nothing"),
        ("kafka://", None, "{id: id}", "", "the topic name is empty"),
    ],
)
def test_spec_load_names_the_job_and_the_name(
    url: str, table: str | None, columns: str, extra: str, expect: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec(url, table, columns, extra), "pipeline.yaml")
    message = str(caught.value)
    assert "push_scores" in message and expect in message and message.startswith("pipeline.yaml:")


def test_names_at_the_limits_load() -> None:
    for url, table in (("postgresql://h/db", PG_63), ("mysql://h/db", MY_64), ("sqlite:///x.db", EMOJI)):
        assert parse_spec(spec(url, table), "pipeline.yaml").jobs["push_scores"]
    assert parse_spec(spec("kafka://h:9092/scores.v1", None, extra=", format: avro"), "p.yaml")
    assert name_problems("postgresql", [("column", PG_63)]) == []
    assert name_problems("mysql", [("column", MY_64), ("table", "表")]) == []


# --------------------------------------------------------------- MariaDB: character sets
@pytest.fixture
def latin1_mysql() -> Iterator[Backend]:
    """A MariaDB database whose default character set is latin1 (as old servers have)."""
    base = os.environ.get("COORD_TEST_MYSQL_URL")
    if not base:
        missing("MariaDB", "COORD_TEST_MYSQL_URL is not set")
    parts = urlsplit(base)
    name = unique("coord_latin1")
    admin = sa.create_engine(urlunsplit(parts._replace(scheme="mysql+pymysql", path="/")))
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET latin1 COLLATE latin1_swedish_ci")
    except sa.exc.OperationalError as exc:
        missing("MariaDB", str(exc))
    url = urlunsplit(parts._replace(scheme="mysql+pymysql", path="/" + name))
    engine = sa.create_engine(url)
    yield Backend("mysql", url, engine)
    engine.dispose()
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE `{name}`")
    admin.dispose()


VALUES = ["plain", "€ and Ŝ", "表", "😀 emoji", "a", "a ", "A"]  # "a", "a " and "A": three keys


@pytest.mark.mysql
def test_latin1_database_takes_any_value_and_name(latin1_mysql: Backend, state_dir: Path) -> None:
    b, table = latin1_mysql, "表 scores"
    data = pa.table({"key": VALUES, "välue": [v * 2 for v in VALUES]})
    settings = DestinationSettings(url=b.url, table=table)
    r = push(data, settings, job="jöb ☃ 😀", key=["key"], create_table=True, state_dir=state_dir)
    assert r.inserted == len(VALUES)
    with b.engine.connect() as conn:
        got = dict(conn.exec_driver_sql(f"SELECT `key`, `välue` FROM `{table}`").fetchall())
        charsets = conn.exec_driver_sql(
            "SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE()"
        ).fetchall()
    assert got == {v: v * 2 for v in VALUES}  # binary NO PAD: "a", "a " and "A" stay three keys
    assert {t: c for t, c in charsets} == {
        table: "utf8mb4_nopad_bin",
        "_coord_push_state": "utf8mb4_nopad_bin",
    }
    r = push(data, settings, job="jöb ☃ 😀", key=["key"], state_dir=state_dir)
    assert (r.unchanged, r.full) == (len(VALUES), False)  # the marker's job and table names read back


@pytest.mark.mysql
def test_failed_first_push_drops_the_table_it_created(latin1_mysql: Backend, state_dir: Path) -> None:
    b, table = latin1_mysql, unique("t")
    data = pa.table({"key": ["ok", "k" * 300], "v": [1, 2]})  # a created key column is VARCHAR(255)
    settings = DestinationSettings(url=b.url, table=table)
    with pytest.raises(PushError) as caught:
        push(data, settings, job="j", key=["key"], create_table=True, state_dir=state_dir)
    message = str(caught.value)
    assert "rolled back" in message and "dropped again" in message and "\n" not in message
    assert table not in _tables(b)
    r = push(data.slice(0, 1), settings, job="j", key=["key"], create_table=True, state_dir=state_dir)
    assert r.inserted == 1 and b.rows(table, "key") == [("ok", 1)]


@pytest.mark.mysql
def test_values_a_narrow_column_cannot_hold_are_rejected(latin1_mysql: Backend, state_dir: Path) -> None:
    b, table = latin1_mysql, unique("t")
    b.exec(
        f"CREATE TABLE `{table}` (id BIGINT PRIMARY KEY, l VARCHAR(20) CHARACTER SET latin1, "
        "m VARCHAR(20) CHARACTER SET utf8mb3, a VARCHAR(20) CHARACTER SET ascii)"
    )
    values = ["plain", "é €", "表", "😀"]
    data = pa.table(
        {
            "id": [0, 1, 2, 3, 4, 5],
            "l": [*values, "x", "x"],
            "m": ["x"] * 3 + ["😀", "表", "x"],
            "a": ["x"] * 5 + ["é"],
        }
    )
    r = push(
        data,
        DestinationSettings(url=b.url, table=table),
        job="j",
        key=["id"],
        max_rejected_fraction=1.0,
        state_dir=state_dir,
    )
    reasons = {k.split(" of ")[1]: n for k, n in r.reject_reasons.items()}
    assert (r.inserted, r.rejected) == (3, 3)  # rows 2, 3 (latin1) and 5 (ascii); row 4 fits utf8mb3
    assert reasons == {"l cannot hold": 2, "a cannot hold": 1}
    assert b.rows(table, "id") == [(0, "plain", "x", "x"), (1, "é €", "x", "x"), (4, "x", "表", "x")]


def test_a_created_table_rejects_what_its_database_cannot_hold(backend: Backend, state_dir: Path) -> None:
    """NaN (SQLite, MariaDB) and NUL (PostgreSQL) failed the first push's statement after the
    table was made; they are rejected per row like those of an existing table."""
    table = unique("t")
    data = pa.table({"id": [1, 2, 3], "x": [1.0, float("nan"), 3.0], "s": ["a", "b", "nul\x00"]})
    r = push(
        data,
        DestinationSettings(url=backend.url, table=table),
        job="j",
        key=["id"],
        create_table=True,
        max_rejected_fraction=0.5,
        state_dir=state_dir,
    )
    expected = {
        "sqlite": {"NaN or infinity in x"},
        "mysql": {"NaN or infinity in x"},
        "postgres": {"NUL character in s"},
    }[backend.name]
    assert set(r.reject_reasons) == expected and r.inserted == 3 - len(expected)
