"""MariaDB/MySQL (PyMySQL): a temporary staging table and one INSERT … ON DUPLICATE KEY UPDATE,
in one transaction.

Temporary tables and DML do not commit implicitly, so staging, merge, deletes and the marker
commit or roll back together. Two statements do commit implicitly and therefore run before
the transaction: creating the marker table (idempotent) and, with create_table, creating a
missing destination table. When the transaction then fails for sure (rolled back, not an
unknown COMMIT), the table this push created is dropped again, so a failed first push leaves
nothing behind; when even that cannot be done (the server is gone), the error says the empty
table stays and why.

Character set: every table the push creates is utf8mb4 (any Unicode value, emoji included,
whatever the server's or the database's default — a latin1 database included), with a binary
NO PAD collation (utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL 8, utf8mb4_bin
elsewhere): two keys are equal exactly when their characters are, which is what the push's
key hashes say. A case- or accent-insensitive collation (_unicode_ci) would make "A" and "a",
two keys of the source, one key of the table, and the upsert would fold one row into the other.

Identifiers are quoted here (backticks, a backtick doubled) and never `%`-escaped: PyMySQL
%-formats a statement only when it is given arguments, and every statement holding a name
taken from the spec or the source runs without arguments (the ones with arguments name only
the push's own tables and columns: the marker, coord_stage, c0, c1, …). SQLAlchemy's MySQL
quoting doubles `%` for its own pyformat layer, which with PyMySQL called directly created
`a%%b` for `a%b`. Staging columns are our own (c0, c1, …) so the only parameters are values.
"""

from __future__ import annotations

import contextlib

import pyarrow as pa
import pymysql
from sqlalchemy.engine import make_url

from coordinator.errors import PushError
from coordinator.push.config import DestinationSettings
from coordinator.push.destinations import failure
from coordinator.push.destinations.base import MARKER_TABLE, Applied, Destination, Marker
from coordinator.push.destinations.failure import BY_STATE, LOST, REFUSED
from coordinator.push.destinations.pyrows import tuples, utc_naive
from coordinator.push.plan import Plan
from coordinator.push.schema import DestColumn, DestTable, arrow_family

# binary NO PAD first (see the module docstring); the first the server knows is used
COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")
PYMYSQL_VERDICTS: failure.Verdicts = {
    pymysql.err.MySQLError: BY_STATE,
    pymysql.err.Warning: REFUSED,
    pymysql.err.Error: BY_STATE,
    pymysql.err.InterfaceError: LOST,  # PyMySQL's "(0, '')": the connection is closed
    pymysql.err.DatabaseError: BY_STATE,
    pymysql.err.DataError: REFUSED,
    pymysql.err.OperationalError: BY_STATE,
    pymysql.err.IntegrityError: REFUSED,
    pymysql.err.InternalError: BY_STATE,
    pymysql.err.ProgrammingError: REFUSED,
    pymysql.err.NotSupportedError: REFUSED,
}
# client 2003 cannot connect, 2006 gone away, 2013 lost during a query, 2055 lost at a step;
# server 1053 shutting down, 1152/1158-1161 network errors, 1927 connection killed, 4031 idle cut
LOST_CODES = frozenset({2003, 2006, 2013, 2055, 1053, 1152, 1158, 1159, 1160, 1161, 1927, 4031})


def pymysql_lost(exc: pymysql.err.MySQLError) -> bool:
    """Whether a PyMySQL error means the connection is gone (the translator of PyMySQL errors)."""
    found = failure.verdict(exc, PYMYSQL_VERDICTS)
    if found != BY_STATE:
        return found == LOST
    return bool(exc.args) and exc.args[0] in LOST_CODES


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


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
    dialect = "mysql"
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
            except pymysql.err.MySQLError as exc:
                raise failure.read_failed("connect to MariaDB/MySQL", exc, False) from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(pymysql.err.MySQLError):  # already closed by a lost connection
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
                "CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, CHARACTER_SET_NAME "
                "FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (self.table,),
            )
            if not info:
                self._connect().commit()
                return None
            columns = {}
            for name, dtype, ctype, nullable, default, extra, max_len, prec, scale, charset in info:
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
                    charset=charset,
                )
            index_rows = self._query(
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND NON_UNIQUE = 0 "
                "ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (self.table,),
            )
            self._connect().commit()
        except pymysql.err.MySQLError as exc:
            raise failure.read_failed(f"describe {self.table!r}", exc, pymysql_lost(exc)) from exc
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
        except pymysql.err.MySQLError as exc:
            raise failure.read_failed(
                f"read the push marker of {self.table!r}", exc, pymysql_lost(exc)
            ) from exc

    def apply(self, plan: Plan, job: str, marker: Marker) -> Applied:
        conn = self._connect()
        created = False
        try:
            with conn.cursor() as cur:  # statements that commit implicitly: before the transaction
                charset = self._table_charset(cur)
                self._create_marker_table(cur, charset)
                if plan.create_table:
                    cur.execute(self._create_statement(plan, charset))
                    created = True
        except pymysql.err.MySQLError as exc:
            raise failure.write_failed(self.table, exc, pymysql_lost(exc)) from exc
        try:
            conn.begin()
            with conn.cursor() as cur:
                counts = self._apply(cur, plan)
                self._write_marker(cur, job, marker, counts)
        except pymysql.err.MySQLError as exc:
            self._quiet_rollback()
            note = self._drop_created() if created else ""
            raise failure.write_failed(self.table, exc, pymysql_lost(exc), note) from exc
        except BaseException:
            self._quiet_rollback()
            if created:
                self._drop_created()
            raise
        try:
            conn.commit()
        except pymysql.err.MySQLError as exc:
            lost = pymysql_lost(exc)
            if lost:  # it may have committed: a table holding this push's rows is not dropped
                raise failure.commit_failed(self.table, exc, True, marker.push_id) from exc
            self._quiet_rollback()
            note = self._drop_created() if created else ""
            raise failure.commit_failed(self.table, exc, False, marker.push_id, note) from exc
        return counts

    def _quiet_rollback(self) -> None:
        """Roll back; on a lost connection the rollback fails too and tells nothing new (the
        server discards a transaction never committed): the connection is dropped instead."""
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except pymysql.err.MySQLError:
            self.close()

    def _drop_created(self) -> str:
        """Drop the table this push created (CREATE TABLE committed on its own) if it is still
        empty; what became of it, for the error message."""
        try:
            with self._connect().cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 30")
                cur.execute(f"SELECT 1 FROM {_quote(self.table)} LIMIT 1")
                if cur.fetchone() is not None:
                    return f"; the table {self.table!r} it created holds rows written since, so it stays"
                cur.execute(f"DROP TABLE {_quote(self.table)}")
            return f"; the table {self.table!r} it had created is dropped again"
        except PushError as exc:  # cannot even connect again
            return f"; the empty table {self.table!r} it created stays ({exc}); drop it or push again"
        except pymysql.err.MySQLError as exc:
            self.close()
            return (
                f"; the empty table {self.table!r} it created stays (it could not be dropped: "
                f"{failure.one_line(exc)}); the next push uses it, or drop it"
            )

    def _table_charset(self, cur: pymysql.cursors.Cursor) -> str:
        """`CHARACTER SET utf8mb4 COLLATE …` with the first of COLLATIONS the server has."""
        cur.execute(
            "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN (%s, %s, %s)",
            COLLATIONS,
        )
        known = {r[0] for r in cur.fetchall()}
        return "CHARACTER SET utf8mb4 COLLATE " + next((c for c in COLLATIONS if c in known), "utf8mb4_bin")

    def _create_marker_table(self, cur: pymysql.cursors.Cursor, charset: str) -> None:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {_quote(MARKER_TABLE)} (job VARCHAR(255) NOT NULL, "
            "dest_table VARCHAR(255) NOT NULL, push_id VARCHAR(64) NOT NULL, "
            "fingerprint VARCHAR(64) NOT NULL, row_count BIGINT NOT NULL, "
            "pushed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), "
            f"PRIMARY KEY (job, dest_table)) {charset}"
        )
        cur.execute(  # one made by an earlier version in the database's default (say latin1)
            "SELECT TABLE_COLLATION FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (MARKER_TABLE,),
        )
        found = cur.fetchone()
        if found and not str(found[0]).startswith("utf8mb4"):
            cur.execute(f"ALTER TABLE {_quote(MARKER_TABLE)} CONVERT TO {charset}")

    def _create_statement(self, plan: Plan, charset: str) -> str:
        key = set(plan.key)
        defs = [
            f"{_quote(f.name)} {_create_type(f, f.name in key)}{' NOT NULL' if f.name in key else ''}"
            for f in plan.rows.schema
        ]
        return (
            f"CREATE TABLE {_quote(self.table)} ({', '.join(defs)}, "
            f"PRIMARY KEY ({', '.join(map(_quote, plan.key))})) {charset}"
        )

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
