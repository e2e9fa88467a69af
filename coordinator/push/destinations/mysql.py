"""MariaDB/MySQL (PyMySQL): a temporary staging table and one INSERT … ON DUPLICATE KEY UPDATE,
in one transaction.

Temporary tables and DML do not commit implicitly, so staging, merge, deletes and the marker
commit or roll back together. Two statements do commit implicitly and therefore run before
the transaction: creating the marker table (idempotent) and, with create_table, creating a
missing destination table (a failed first push then leaves that new table empty).
Identifiers are quoted by SQLAlchemy's MySQL dialect; staging columns are our own (c0, c1, …)
so the only parameters of a statement are values.
"""

from __future__ import annotations

import pyarrow as pa
import pymysql
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.engine import make_url

from coordinator.errors import PushError
from coordinator.push.config import DestinationSettings
from coordinator.push.destinations.base import MARKER_TABLE, Applied, Destination, Marker
from coordinator.push.destinations.pyrows import tuples, utc_naive
from coordinator.push.plan import Plan
from coordinator.push.schema import DestColumn, DestTable, arrow_family

_quote = mysql_dialect.dialect().identifier_preparer.quote_identifier
INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
FAMILIES = {
    **dict.fromkeys(INT_BITS, "int"),
    "float": "float",
    "double": "float",
    "real": "float",
    "decimal": "decimal",
    "numeric": "decimal",
    "char": "string",
    "varchar": "string",
    "tinytext": "string",
    "text": "string",
    "mediumtext": "string",
    "longtext": "string",
    "enum": "string",
    "json": "json",
    "date": "date",
    "datetime": "timestamp",
    "timestamp": "timestamp",
    "time": "time",
    "binary": "bytes",
    "varbinary": "bytes",
    "tinyblob": "bytes",
    "blob": "bytes",
    "mediumblob": "bytes",
    "longblob": "bytes",
    "boolean": "bool",
}


def _create_type(f: pa.Field, is_key: bool) -> str:
    fam, t = arrow_family(f.type), f.type
    if fam == "decimal":
        return f"DECIMAL({t.precision},{t.scale})"
    if fam == "string":
        return "VARCHAR(255)" if is_key else "LONGTEXT"
    if fam == "bytes":
        return "VARBINARY(255)" if is_key else "LONGBLOB"
    return {
        "int": "BIGINT",
        "float": "DOUBLE",
        "bool": "BOOLEAN",
        "date": "DATE",
        "timestamp": "DATETIME(6)",
        "time": "TIME(6)",
    }.get(fam, "LONGTEXT")


class MySQLDestination(Destination):
    nan_ok = False

    def __init__(self, config: DestinationSettings) -> None:
        url = make_url(config.url)
        password = config.password.get_secret_value() if config.password else url.password
        self._connect_args = dict(
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=url.username,
            password=password or "",
            database=url.database,
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=30,
        )
        self.table = str(config.table)
        self.identity = f"mysql://{url.username}@{url.host}:{url.port or 3306}/{url.database}#{self.table}"
        self._conn: pymysql.connections.Connection | None = None

    def _connect(self) -> pymysql.connections.Connection:
        if self._conn is None:
            try:
                self._conn = pymysql.connect(**self._connect_args)
            except pymysql.Error as exc:
                raise PushError(f"cannot connect to MariaDB/MySQL: {exc}") from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _query(self, statement: str, args: tuple | None = None) -> list[tuple]:
        with self._connect().cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())

    def describe(self) -> DestTable | None:
        try:
            info = self._query(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, "
                "CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (self.table,),
            )
            if not info:
                self._connect().commit()
                return None
            columns = {}
            for name, dtype, ctype, nullable, default, extra, max_len, prec, scale in info:
                dtype = dtype.lower()
                columns[name] = DestColumn(
                    name,
                    FAMILIES.get(dtype, "other"),
                    ctype,
                    nullable=nullable == "YES",
                    has_default=default is not None
                    or "auto_increment" in (extra or "").lower()
                    or "generated" in (extra or "").lower(),
                    int_bits=INT_BITS.get(dtype),
                    unsigned="unsigned" in ctype.lower(),
                    max_length=max_len if dtype in ("char", "varchar") else None,
                    precision=prec if dtype in ("decimal", "numeric") else None,
                    scale=scale,
                )
            index_rows = self._query(
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND NON_UNIQUE = 0 "
                "ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (self.table,),
            )
            self._connect().commit()
        except pymysql.Error as exc:
            raise PushError(f"cannot describe {self.table!r}: {exc}") from exc
        indexes: dict[str, set[str]] = {}
        for index, column in index_rows:
            indexes.setdefault(index, set()).add(column)
        return DestTable(self.table, columns, [frozenset(v) for v in indexes.values()])

    def current(self, job: str) -> tuple[Marker | None, int]:
        try:
            rows = self._query(f"SELECT count(*) FROM {_quote(self.table)}")[0][0]
            exists = self._query(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (MARKER_TABLE,),
            )
            found = (
                self._query(
                    f"SELECT push_id, fingerprint, row_count FROM {_quote(MARKER_TABLE)} "
                    "WHERE job = %s AND dest_table = %s",
                    (job, self.table),
                )
                if exists
                else []
            )
            self._connect().commit()
            return (Marker(*found[0]) if found else None), rows
        except pymysql.Error as exc:
            raise PushError(f"cannot read the push marker of {self.table!r}: {exc}") from exc

    def apply(self, plan: Plan, job: str, marker: Marker) -> Applied:
        conn = self._connect()
        try:
            with conn.cursor() as cur:  # statements that commit implicitly: before the transaction
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {_quote(MARKER_TABLE)} (job VARCHAR(255) NOT NULL, "
                    "dest_table VARCHAR(255) NOT NULL, push_id VARCHAR(64) NOT NULL, "
                    "fingerprint VARCHAR(64) NOT NULL, row_count BIGINT NOT NULL, "
                    "pushed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), "
                    "PRIMARY KEY (job, dest_table))"
                )
                if plan.create_table:
                    defs = [
                        f"{_quote(f.name)} {_create_type(f, f.name in plan.key)}"
                        f"{' NOT NULL' if f.name in plan.key else ''}"
                        for f in plan.rows.schema
                    ]
                    cur.execute(
                        f"CREATE TABLE {_quote(self.table)} ({', '.join(defs)}, "
                        f"PRIMARY KEY ({', '.join(map(_quote, plan.key))}))"
                    )
            conn.begin()
            try:
                with conn.cursor() as cur:
                    counts = self._apply(cur, plan)
                    self._write_marker(cur, job, marker, counts)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return counts
        except pymysql.Error as exc:
            raise PushError(f"push into {self.table!r} failed and was rolled back: {exc}") from exc

    def _apply(self, cur: pymysql.cursors.Cursor, plan: Plan) -> Applied:
        q, dest, key, cols = _quote, _quote(self.table), list(plan.key), plan.columns
        n = plan.rows.num_rows
        inserted = updated = unchanged = skipped = deleted = 0
        if n:
            stage = self._stage(cur, "coord_stage", cols, key, plan.rows)
            s = {c: f"s.c{i}" for i, c in enumerate(cols)}
            match = " AND ".join(f"d.{q(k)} = {s[k]}" for k in key)
            cur.execute(f"SELECT count(*) FROM {stage} AS s JOIN {dest} AS d ON {match}")
            existing = cur.fetchone()[0]
            values = [c for c in cols if c not in key]
            if plan.mode == "update":
                if values:
                    cur.execute(
                        f"UPDATE {dest} AS d JOIN {stage} AS s ON {match} SET "
                        + ", ".join(f"d.{q(c)} = {s[c]}" for c in values)
                    )
                    updated = cur.rowcount
                skipped = n - existing
            elif plan.mode == "insert" or not values:
                cur.execute(
                    f"INSERT INTO {dest} ({', '.join(map(q, cols))}) SELECT {', '.join(s.values())} "
                    f"FROM {stage} AS s WHERE NOT EXISTS (SELECT 1 FROM {dest} AS d WHERE {match})"
                )
                inserted = cur.rowcount
                skipped = n - inserted if plan.mode == "insert" else 0
            else:
                cur.execute(
                    f"INSERT INTO {dest} ({', '.join(map(q, cols))}) SELECT {', '.join(s.values())} "
                    f"FROM {stage} AS s ON DUPLICATE KEY UPDATE "
                    + ", ".join(f"{q(c)} = VALUES({q(c)})" for c in values)
                )
                inserted = n - existing
                updated = (cur.rowcount - inserted) // 2  # affected rows: 1 per insert, 2 per change
            unchanged = n - inserted - updated - skipped
        for keys, keep in ((plan.deletes, False), (plan.keep_keys, True)):
            if keys is None or (not keep and keys.num_rows == 0):
                continue
            tmp = self._stage(cur, "coord_keys", key, key, keys.select(key))
            match = " AND ".join(f"d.{q(k)} = k.c{i}" for i, k in enumerate(key))
            if keep:
                cur.execute(f"DELETE d FROM {dest} AS d LEFT JOIN {tmp} AS k ON {match} WHERE k.c0 IS NULL")
            else:
                cur.execute(f"DELETE d FROM {dest} AS d JOIN {tmp} AS k ON {match}")
            deleted = cur.rowcount
        return Applied(inserted, updated, deleted, unchanged, skipped)

    def _stage(
        self, cur: pymysql.cursors.Cursor, name: str, cols: list[str], key: list[str], data: pa.Table
    ) -> str:
        stage = _quote(name)
        index = ", ".join(f"c{cols.index(k)}" for k in key)
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {stage}")
        cur.execute(
            f"CREATE TEMPORARY TABLE {stage} (INDEX ({index})) SELECT "
            + ", ".join(f"d.{_quote(c)} AS c{i}" for i, c in enumerate(cols))
            + f" FROM {_quote(self.table)} AS d LIMIT 0"
        )
        names = ", ".join(f"c{i}" for i in range(len(cols)))
        stmt = f"INSERT INTO {stage} ({names}) VALUES ({', '.join(['%s'] * len(cols))})"
        for rows in tuples(data, utc_naive):
            cur.executemany(stmt, rows)
        return stage

    def _write_marker(self, cur: pymysql.cursors.Cursor, job: str, marker: Marker, applied: Applied) -> None:
        rows = marker.after(applied)
        if rows is None:
            cur.execute(f"SELECT count(*) FROM {_quote(self.table)}")
            rows = cur.fetchone()[0]
        cur.execute(
            f"INSERT INTO {_quote(MARKER_TABLE)} (job, dest_table, push_id, fingerprint, row_count) "
            "VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE push_id = VALUES(push_id), "
            "fingerprint = VALUES(fingerprint), row_count = VALUES(row_count), "
            "pushed_at = CURRENT_TIMESTAMP(6)",
            (job, self.table, marker.push_id, marker.fingerprint, rows),
        )
