"""Statements of a PostgreSQL transaction that travel with its next one: a round trip fewer each.

After an idle pause each round trip to PostgreSQL costs 0.1-0.4 ms here (the server's process
and this one wake up), more than most statements' own work; the launch path's first
transaction made 13 (bench/txn.py). Two kinds need no round trip of their own:

- Writes whose answer nobody reads (an outbox row, an audit row, the partitions' versions):
  `later` keeps them, and they run as data-modifying WITH queries of the next statement when
  that reads none of their tables (a WITH query's changes are not visible to the rest of its
  statement), else in a statement of their own just before it. Two writes to one table are
  never merged: in one statement they would not see each other's rows, and ON CONFLICT could
  not do its work. `settle` runs what is kept (before a commit, before SQLAlchemy's own
  statements).
- The lease's fence (`check`): a row that must be there, else the transaction raises. It runs
  inside the next statement when that is an insert answering its new keys (`insert_new`: a
  turn's events, its runs) or an update answering the rows it changed (`update_each`: the
  handles and ends of runs, which a job's end → its downstream begins with) — `WITH fence AS
  (... FOR KEY SHARE), new AS (INSERT ... RETURNING key) SELECT key FROM new UNION ALL SELECT
  NULL FROM fence`, the NULL row saying the lease held — else on its own just before it, with
  the writes kept so far inside it. Either way its lock is held, and its answer
  known, before the transaction sees that of a statement after it; rows a fenced transaction
  inserted are rolled back with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg
from sqlalchemy import Connection

PENDING = "coord.pending"  # conn.info's key: the Deferred with statements kept
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_renamed: dict[tuple[str, str], str] = {}  # (SQL text, prefix) → the text, its parameters prefixed


class Deferred:
    """What a PostgreSQL transaction keeps to send with its next statement."""

    conn: Connection
    _driver: psycopg.Connection

    def _deferred_init(self) -> None:
        self._later: list[tuple[str, str, dict[str, object]]] = []  # (table, SQL, params)
        self._check: tuple[str, dict[str, object], Callable[[], BaseException]] | None = None

    def later(self, table: str, sql: str, params: dict[str, object]) -> None:
        if any(t == table for t, _, _ in self._later):
            self.settle()
        self._later.append((table, sql, params))
        self.conn.info[PENDING] = self

    def check_later(self, sql: str, params: dict[str, object], failed: Callable[[], BaseException]) -> None:
        self.settle()
        self._check = (sql, params, failed)
        self.conn.info[PENDING] = self

    def settle(self) -> None:
        self.conn.info.pop(PENDING, None)
        if self._check is not None:
            sql, params, failed = self._check
            self._check = None
            if self._later and not any(t in sql for t, _, _ in self._later):
                # the writes kept since travel with the fence: its rows are the fence's own
                sql, params = self._with_writes(sql, params)
            if self._cursor(sql, params).fetchone() is None:
                raise failed()
        if self._later:
            self._cursor(*self._with_writes("SELECT 1", {}))

    def forget(self) -> None:
        """The transaction ends without them (it is rolled back)."""
        self.conn.info.pop(PENDING, None)
        self._later, self._check = [], None

    def _cursor(self, sql: str, params: dict[str, object]) -> psycopg.Cursor:
        cursor = self._driver.cursor()
        cursor.execute(sql, params)
        return cursor

    def _run_deferred(self, sql: str, params: dict[str, object]) -> psycopg.Cursor:
        """`sql` with what is kept: the writes inside it where it reads none of their tables."""
        if self._check is not None or (self._later and any(t in sql for t, _, _ in self._later)):
            self.settle()
        elif self._later:
            sql, params = self._with_writes(sql, params)
        return self._cursor(sql, params)

    def _with_writes(self, sql: str, params: dict[str, object]) -> tuple[str, dict[str, object]]:
        """`sql` with the kept writes as its first WITH queries (their parameters prefixed)."""
        writes, self._later = self._later, []
        self.conn.info.pop(PENDING, None)
        parts, merged = [], {}
        for i, (_, text, values) in enumerate(writes):
            prefix = f"w{i}_"
            renamed = _renamed.get((text, prefix))
            if renamed is None:
                renamed = _renamed[(text, prefix)] = _PLACEHOLDER.sub(rf"%({prefix}\1)s", text)
            parts.append(f"coord_w{i} AS ({renamed})")
            merged.update({prefix + k: v for k, v in values.items()})
        head = "WITH " + ", ".join(parts)
        merged.update(params)
        if sql.startswith("WITH "):
            return f"{head}, {sql[5:]}", merged
        return f"{head} {sql}", merged

    def _insert_fenced(self, sql: str, params: dict[str, object], key: str) -> psycopg.Cursor | _Rows:
        """An INSERT ... RETURNING `key` with the kept fence inside it (see the module docstring);
        a cursor of the new keys, once the fence held."""
        return self._fenced(sql, params, (key,))

    def _fenced(
        self, sql: str, params: dict[str, object], columns: tuple[str, ...]
    ) -> psycopg.Cursor | _Rows:
        """A data-modifying statement RETURNING `columns` (the first never NULL) with the kept
        fence inside it, and the kept writes too where it reads none of their tables: one round
        trip for the three. Its rows, once the fence held."""
        if self._check is None:
            return self._run_deferred(sql, params)
        fence, fence_params, failed = self._check
        self._check = None
        if self._later and any(t in sql for t, _, _ in self._later):
            self.settle()
        self.conn.info.pop(PENDING, None)
        nulls = ", ".join("NULL" for _ in columns)
        text = (
            f"WITH coord_fence AS ({fence}), coord_new AS ({sql}) "
            f"SELECT {', '.join(columns)} FROM coord_new UNION ALL SELECT {nulls} FROM coord_fence"
        )
        merged = {**fence_params, **params}
        if self._later:
            text, merged = self._with_writes(text, merged)
        rows = self._cursor(text, merged).fetchall()
        if not any(row[0] is None for row in rows):
            raise failed()
        return _Rows([row for row in rows if row[0] is not None])


class _Rows:
    """Rows already fetched, as a cursor's fetchall gives them."""

    def __init__(self, rows: list) -> None:
        self._rows = rows

    def fetchall(self) -> list:
        return self._rows
