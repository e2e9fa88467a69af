"""PostgreSQL (psycopg 3): COPY into a TEMP staging table, one set-based merge, one transaction.

Rows travel as CSV produced by Arrow's C++ writer straight into `COPY … FROM STDIN`, so no
Python object is made per row. A full push into an empty table (first push) copies straight
into the table under a lock instead of staging. Every identifier goes through
psycopg.sql.Identifier.
"""

from __future__ import annotations

import io

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql
from sqlalchemy.engine import make_url

from coordinator.errors import PushError
from coordinator.push.config import DestinationSettings
from coordinator.push.destinations.base import MARKER_TABLE, Applied, Destination, Marker
from coordinator.push.destinations.pyrows import utc_naive
from coordinator.push.plan import Plan
from coordinator.push.schema import DestColumn, DestTable, arrow_family

COPY_CHUNK_ROWS = 100_000
INT_BITS = {"int2": 16, "int4": 32, "int8": 64}
FAMILIES = {
    "int2": "int",
    "int4": "int",
    "int8": "int",
    "float4": "float",
    "float8": "float",
    "numeric": "decimal",
    "varchar": "string",
    "bpchar": "string",
    "text": "string",
    "name": "string",
    "citext": "string",
    "bool": "bool",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
    "time": "time",
    "timetz": "time",
    "json": "json",
    "jsonb": "json",
    "bytea": "bytes",
}


def _create_type(t: pa.DataType) -> str:
    fam = arrow_family(t)
    if fam == "decimal":
        return f"numeric({t.precision},{t.scale})"
    if fam == "timestamp":
        return "timestamptz" if t.tz else "timestamp"
    return {
        "int": "bigint",
        "float": "double precision",
        "string": "text",
        "bool": "boolean",
        "date": "date",
        "time": "time",
        "bytes": "bytea",
    }.get(fam, "text")


def copy_arrow(cur: psycopg.Cursor, table: sql.Composable, columns: list[str], data: pa.Table) -> None:
    """COPY `data` into `table` as CSV written by Arrow (nulls unquoted-empty, strings quoted).

    Zoned timestamps are written as their UTC wall-clock time (formatting them with a zone is
    ~15× slower in Arrow); the transaction runs with TimeZone = UTC, so they read back exact."""
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    options = pacsv.WriteOptions(include_header=False)
    data = pa.table([utc_naive(c) for c in data.columns], names=data.column_names)
    with cur.copy(stmt) as copy:
        for batch in data.to_batches(max_chunksize=COPY_CHUNK_ROWS):
            buf = io.BytesIO()
            pacsv.write_csv(batch, buf, options)
            copy.write(buf.getbuffer())


class PostgresDestination(Destination):
    nul_ok = False

    def __init__(self, config: DestinationSettings) -> None:
        url = make_url(config.url).set(drivername="postgresql")
        if config.password is not None:
            url = url.set(password=config.password.get_secret_value())
        self._conninfo = url.render_as_string(hide_password=False)
        self.identity = f"{url.render_as_string(hide_password=True)}#{config.db_schema or ''}.{config.table}"
        self.schema, self.table = config.db_schema, str(config.table)
        self._conn: psycopg.Connection | None = None

    # -- plumbing
    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self._conninfo, connect_timeout=30)
            except psycopg.Error as exc:
                raise PushError(f"cannot connect to PostgreSQL: {exc}") from exc
        return self._conn

    def _name(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.schema, table) if self.schema else sql.Identifier(table)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- interface
    def describe(self) -> DestTable | None:
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema()) "
                    "AND c.relkind IN ('r', 'p')",
                    (self.table, self.schema),
                )
                found = cur.fetchone()
                if found is None:
                    return None
                oid = found[0]
                cur.execute(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, a.attnotnull, "
                    "a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', "
                    "information_schema._pg_char_max_length(a.atttypid, a.atttypmod), "
                    "information_schema._pg_numeric_precision(a.atttypid, a.atttypmod), "
                    "information_schema._pg_numeric_scale(a.atttypid, a.atttypmod) "
                    "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                    "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                    (oid,),
                )
                columns = {}
                for name, sql_type, typname, notnull, has_default, max_len, prec, scale in cur.fetchall():
                    columns[name] = DestColumn(
                        name,
                        FAMILIES.get(typname, "other"),
                        sql_type,
                        nullable=not notnull,
                        has_default=has_default,
                        int_bits=INT_BITS.get(typname),
                        max_length=max_len,
                        precision=prec if typname == "numeric" else None,
                        scale=scale,
                    )
                cur.execute(
                    "SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a "
                    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL GROUP BY i.indexrelid",
                    (oid,),
                )
                keys = [frozenset(r[0]) for r in cur.fetchall()]
            return DestTable(self.table, columns, keys)
        except psycopg.Error as exc:
            raise PushError(f"cannot describe {self.table!r}: {exc}") from exc

    def current(self, job: str) -> tuple[Marker | None, int]:
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(self._name(self.table)))
                rows = cur.fetchone()[0]
                cur.execute("SELECT to_regclass(%s)", (self._name(MARKER_TABLE).as_string(conn),))
                if cur.fetchone()[0] is None:
                    return None, rows
                cur.execute(
                    sql.SQL(
                        "SELECT push_id, fingerprint, row_count FROM {} WHERE job = %s AND dest_table = %s"
                    ).format(self._name(MARKER_TABLE)),
                    (job, self.table),
                )
                found = cur.fetchone()
            return (Marker(*found) if found else None), rows
        except psycopg.Error as exc:
            raise PushError(f"cannot read the push marker of {self.table!r}: {exc}") from exc

    def apply(self, plan: Plan, job: str, marker: Marker) -> Applied:
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SET LOCAL TimeZone = 'UTC'")  # copy_arrow writes zoned timestamps as UTC
                counts = self._apply(cur, plan)
                self._write_marker(cur, job, marker)
            return counts
        except psycopg.Error as exc:
            raise PushError(f"push into {self.table!r} failed and was rolled back: {exc}") from exc

    # -- the transaction's steps
    def _apply(self, cur: psycopg.Cursor, plan: Plan) -> Applied:
        dest, cols, key = self._name(self.table), plan.columns, list(plan.key)
        if plan.create_table:
            self._create(cur, plan)
        inserted = updated = unchanged = skipped = deleted = 0
        if plan.rows.num_rows and plan.full and plan.mode != "update" and self._lock_if_empty(cur, dest):
            copy_arrow(cur, dest, cols, plan.rows)
            inserted = plan.rows.num_rows
        elif plan.rows.num_rows:
            stage = sql.Identifier("coord_stage")
            cur.execute(
                sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                    stage, sql.SQL(", ").join(map(sql.Identifier, cols)), dest
                )
            )
            copy_arrow(cur, stage, cols, plan.rows)
            cur.execute(sql.SQL("ANALYZE {}").format(stage))
            inserted, updated, skipped = self._merge(cur, plan.mode, dest, stage, cols, key)
            if plan.mode == "insert":  # DO NOTHING: a key already there is skipped, not updated
                skipped = plan.rows.num_rows - inserted
            unchanged = plan.rows.num_rows - inserted - updated - skipped
        if plan.deletes is not None and plan.deletes.num_rows:
            deleted = self._delete(cur, dest, key, plan.deletes, keep=False)
        if plan.keep_keys is not None:
            deleted = self._delete(cur, dest, key, plan.keep_keys, keep=True)
        return Applied(inserted, updated, deleted, unchanged, skipped)

    def _create(self, cur: psycopg.Cursor, plan: Plan) -> None:
        defs = [
            sql.SQL("{} {}{}").format(
                sql.Identifier(f.name),
                sql.SQL(_create_type(f.type)),
                sql.SQL(" NOT NULL" if f.name in plan.key else ""),
            )
            for f in plan.rows.schema
        ]
        defs.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, plan.key))))
        cur.execute(sql.SQL("CREATE TABLE {} ({})").format(self._name(self.table), sql.SQL(", ").join(defs)))

    def _lock_if_empty(self, cur: psycopg.Cursor, dest: sql.Composable) -> bool:
        cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(dest))
        cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(dest))
        return bool(cur.fetchone()[0])

    def _merge(
        self,
        cur: psycopg.Cursor,
        mode: str,
        dest: sql.Composable,
        stage: sql.Identifier,
        cols: list[str],
        key: list[str],
    ) -> tuple[int, int, int]:
        ident = sql.Identifier
        collist = sql.SQL(", ").join(map(ident, cols))
        values = [c for c in cols if c not in key]
        d = ident("d")
        differs = sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("{}.{}").format(d, ident(c)) for c in values),
            sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.SQL("EXCLUDED"), ident(c)) for c in values),
        )
        keylist = sql.SQL(", ").join(map(ident, key))
        if mode == "update":
            if not values:
                return 0, 0, 0
            stmt = sql.SQL(
                "UPDATE {} AS d SET {} FROM {} AS s WHERE {} AND ({}) IS DISTINCT FROM ({})"
            ).format(
                dest,
                sql.SQL(", ").join(sql.SQL("{} = s.{}").format(ident(c), ident(c)) for c in values),
                stage,
                sql.SQL(" AND ").join(sql.SQL("d.{} = s.{}").format(ident(k), ident(k)) for k in key),
                sql.SQL(", ").join(sql.SQL("d.{}").format(ident(c)) for c in values),
                sql.SQL(", ").join(sql.SQL("s.{}").format(ident(c)) for c in values),
            )
            cur.execute(stmt)
            updated = cur.rowcount
            cur.execute(
                sql.SQL(
                    "SELECT count(*) FROM {} AS s WHERE NOT EXISTS (SELECT 1 FROM {} AS d WHERE {})"
                ).format(
                    stage,
                    dest,
                    sql.SQL(" AND ").join(sql.SQL("d.{} = s.{}").format(ident(k), ident(k)) for k in key),
                )
            )
            return 0, updated, cur.fetchone()[0]
        if mode == "insert" or not values:
            conflict = sql.SQL("DO NOTHING")
        else:
            conflict = sql.SQL("DO UPDATE SET {} WHERE {}").format(
                sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(ident(c), ident(c)) for c in values),
                differs,
            )
        cur.execute(
            sql.SQL(
                "WITH r AS (INSERT INTO {} AS {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {} "
                "RETURNING (xmax = 0) AS ins) "
                "SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM r"
            ).format(dest, d, collist, collist, stage, keylist, conflict)
        )
        inserted, updated = cur.fetchone()
        return inserted, updated, 0

    def _delete(
        self, cur: psycopg.Cursor, dest: sql.Composable, key: list[str], keys: pa.Table, keep: bool
    ) -> int:
        ident = sql.Identifier
        tmp = ident("coord_keys")
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                tmp, sql.SQL(", ").join(map(ident, key)), dest
            )
        )
        copy_arrow(cur, tmp, key, keys.select(key))
        match = sql.SQL(" AND ").join(sql.SQL("d.{} = k.{}").format(ident(c), ident(c)) for c in key)
        if keep:
            cur.execute(sql.SQL("ANALYZE {}").format(tmp))
            cur.execute(
                sql.SQL("DELETE FROM {} AS d WHERE NOT EXISTS (SELECT 1 FROM {} AS k WHERE {})").format(
                    dest, tmp, match
                )
            )
        else:
            cur.execute(sql.SQL("DELETE FROM {} AS d USING {} AS k WHERE {}").format(dest, tmp, match))
        return cur.rowcount

    def _write_marker(self, cur: psycopg.Cursor, job: str, marker: Marker) -> None:
        name = self._name(MARKER_TABLE)
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (job text NOT NULL, dest_table text NOT NULL, "
                "push_id text NOT NULL, fingerprint text NOT NULL, row_count bigint NOT NULL, "
                "pushed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, dest_table))"
            ).format(name)
        )
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(self._name(self.table)))
        rows = cur.fetchone()[0]
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (job, dest_table, push_id, fingerprint, row_count) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job, dest_table) DO UPDATE SET "
                "push_id = EXCLUDED.push_id, fingerprint = EXCLUDED.fingerprint, "
                "row_count = EXCLUDED.row_count, pushed_at = now()"
            ).format(name),
            (job, self.table, marker.push_id, marker.fingerprint, rows),
        )
