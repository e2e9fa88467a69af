"""How one transaction runs the store's statements: one small interface, a PostgreSQL and a
SQLite implementation (`Sql.of(conn)` picks one).

The store's rooms (runs, events, outbox, views) write plain SQLAlchemy Core and hand it here;
nothing there asks which database it is on. The interface:

    execute(key, build, params)   a statement compiled once per `key`, run on the driver
    insert(table)                 the dialect's INSERT (it has on_conflict_do_nothing/_update)
    in_list(column, name)         `column IN <the list given as parameter name>`
    write(table, rows, finish)    INSERT many rows (`finish` adds ON CONFLICT ...)
    insert_new(table, key, rows)  INSERT the rows not stored yet; the keys inserted now
    pairs(key, query, c1, c2, pairs, order_by)     rows whose (c1, c2) is one of `pairs`
    update_each(key, table, match, where, types, rows, values)   UPDATE each row's match
    lock(name, wait)              a lock held until the transaction ends
    check(key, build, params, failed)   a row that must be there (the lease's fence), else
                                  failed() is raised, before the next statement's answer
    execute_later(key, build, params, table)   a write nobody reads the answer of
    settle(), forget()            what those left pending, run (before a commit) or dropped

Why the tricks, as measured (the bench is bench/latency.py):
- Compiled once, run on the driver's connection. Building, cache-keying and executing a Core
  statement cost ~1 ms of Python each time — more than PostgreSQL's own work for a turn's few
  rows, and a loop turn runs about ten of them. So `execute` builds a statement once per key,
  keeps its SQL text and the literals it compiled in (as parameter defaults), and then only
  that text and the parameters travel, inside the same transaction as everything else.
  A statement whose text is not fixed (an expanding IN) is refused rather than cached wrong.
- Lists as one parameter. An expanding IN is re-rendered element by element at every
  execution; on SQLite a list is one JSON text read by `json_each` (a turn's lookups this way:
  1,000 events/s p50/p99 20-26/60-74 ms against 47-58/129-140; sustained 2,595 events/s
  against 1,840), on PostgreSQL `= ANY(array)` (one parameter, a prepared plan).
- Many rows as one JSON recordset on PostgreSQL (`json_to_recordset(:rows) AS (name type, ...)`):
  one parameter whatever the row count, so a fixed SQL text and plan. JSON rather than arrays
  because psycopg escapes every element of a text array with a regular expression, which costs
  more than the statement itself for event bodies; encoded with orjson, a fifth of the loop
  thread's time before.
- Many rows by the driver's executemany on SQLite, the statement compiled once per call site
  and the rows turned into tuples by itemgetter: SQLAlchemy's per-row parameter processing,
  and compiling each time, cost more than SQLite's own work.
- Pair lookups on PostgreSQL are a LATERAL index lookup per pair, OFFSET 0 keeping the planner
  from flattening it into a plain join: a fresh, growing table's statistics made the join a hash
  join over a sequential scan (3.7 ms against 1.3 ms for 50 pairs over 8,000 rows, and growing;
  Kafka+PostgreSQL at 1,000 events/s: p99 66-83 ms against 116-166).
- Inserts that must say what was new: ON CONFLICT DO NOTHING RETURNING on PostgreSQL (right
  under concurrency: of two writers of one row, exactly one gets it); on SQLite, whose
  transactions hold the write lock from BEGIN IMMEDIATE, a look first, then an insert of the
  rest. Likewise updates of rows still matching a condition: UPDATE ... FROM the recordset ...
  RETURNING on PostgreSQL (its row locks are the check), a look then an executemany on SQLite.
- Statements that need no round trip of their own on PostgreSQL (writes nobody reads the
  answer of, the lease's fence) travel with the next statement: deferred.py.
- Locks: a transaction-scoped advisory lock on PostgreSQL (remembered, so taking it again in
  the same transaction costs no round trip); SQLite's transactions hold the write lock already.

Errors are the drivers' own (psycopg.Error, sqlite3.Error): StateStore.begin maps them to
StoreError at the store's edge.
"""

from __future__ import annotations

import abc
import operator
import sqlite3
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence

import psycopg
from sqlalchemy import (
    Connection,
    Text,
    any_,
    bindparam,
    func,
    literal,
    select,
    text,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import pysqlite

from coordinator.errors import StoreError
from coordinator.store.deferred import Deferred
from coordinator.store.rows import dumps
from coordinator.store.sqlparts import built, json_rows, recordset, recordset_tag

Build = Callable[[], object]
_places: dict[str, list[int]] = {}  # pairs_both: a lookup's order_by columns' places in its rows


class Sql(abc.ABC):
    """One transaction's statement runner (see the module docstring for each method's why)."""

    _named: dict[Hashable, tuple[str, dict[str, object]]]  # key → (SQL text, defaults), per class

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._driver = conn.connection.driver_connection

    @staticmethod
    def of(conn: Connection) -> Sql:
        return PostgresSql(conn) if conn.dialect.name == "postgresql" else SqliteSql(conn)

    def execute(self, key: Hashable, build: Build, params: dict[str, object]):
        """(driver cursor) The statement `build()` returns, compiled once per `key` with named
        parameters; a list parameter may be given as a Python list (see `in_list`)."""
        return self._run(*self._text(key, build, params))

    def _text(self, key: Hashable, build: Build, params: dict[str, object]) -> tuple[str, dict[str, object]]:
        """The SQL text of `execute`'s statement and its parameters, the literals included."""
        entry = self._named.get(key)
        if entry is None:
            compiled = build().compile(dialect=self._dialect())  # type: ignore[attr-defined]
            if "POSTCOMPILE" in str(compiled):  # an expanding IN: its SQL text is not fixed
                raise StoreError(f"statement {key!r} cannot be compiled once: {compiled}")
            defaults = {k: v for k, v in compiled.params.items() if k not in params}
            entry = self._named[key] = (str(compiled), defaults)
        sql, defaults = entry
        return sql, {**defaults, **params} if defaults else params

    def execute_later(self, key: Hashable, build: Build, params: dict[str, object], table: str) -> None:
        """`execute` of a statement into `table` whose answer nobody reads (an INSERT without
        RETURNING): on PostgreSQL it may travel with the transaction's next statement."""
        self.execute(key, build, params)

    def check(
        self, key: Hashable, build: Build, params: dict[str, object], failed: Callable[[], BaseException]
    ) -> None:
        """The statement must give a row, else the transaction raises `failed()`: at the latest
        before the next statement runs (on PostgreSQL it may travel with that one), or `settle`."""
        if self.execute(key, build, params).fetchone() is None:
            raise failed()

    def settle(self) -> None:
        """What `check` and `execute_later` left to travel with a later statement, run now (the
        transaction is about to commit, or SQLAlchemy runs a statement of its own)."""
        return None  # nothing is left to travel on SQLite

    def forget(self) -> None:
        """The transaction ends: what was left to travel is dropped (it is rolled back)."""
        return None

    @abc.abstractmethod
    def _dialect(self): ...

    @abc.abstractmethod
    def _run(self, sql: str, params: dict[str, object]): ...

    @abc.abstractmethod
    def insert(self, table):
        """The dialect's INSERT construct of `table` (with on_conflict_do_nothing/_update)."""

    @abc.abstractmethod
    def in_list(self, column_, name: str):
        """`column IN` the list given (as a Python list) in parameter `name`."""

    @abc.abstractmethod
    def write(self, table, rows: list[dict], finish: Callable | None = None) -> None:
        """INSERT `rows` (dicts of one shape), `finish` adding ON CONFLICT to the statement (it
        is given the dialect's insert); compiled once per table, shape and `finish`'s code."""

    @abc.abstractmethod
    def insert_new(self, table, key: str, rows: Mapping[str, dict]) -> set[str]:
        """INSERT the `rows` (by the value of their unique `key` column) not stored yet; returns
        the keys inserted now."""

    @abc.abstractmethod
    def pairs(
        self, key: str, query, c1, c2, pairs: list[tuple[str, str]], order_by: Sequence[str] = ()
    ) -> Iterator:
        """Rows (tuples) of `query` whose (c1, c2) is one of `pairs`, each pair's rows in
        `order_by` order (columns of `query`). `query` may be a function that builds it: it is
        called only when the statement is compiled (building one costs more than a lookup)."""

    def pairs_both(
        self, first: tuple, second: tuple, try_locks: Sequence[str] = ()
    ) -> tuple[Iterator, Iterator]:
        """Two `pairs` lookups (each a tuple of its arguments) at once: one statement on
        PostgreSQL (a round trip fewer for the readiness snapshot), two on SQLite. `try_locks`:
        names whose `lock(name, wait=False)` is tried in that same statement, its answer kept
        for when the transaction asks (a lock's own round trip fewer; see `lock`)."""
        return self.pairs(*first), self.pairs(*second)

    @abc.abstractmethod
    def update_each(
        self,
        key: str,
        table,
        match: Mapping[str, str],
        where,
        types: Mapping[str, object],
        rows: list[dict],
        values: Callable[[Mapping[str, object]], dict],
    ) -> set[tuple]:
        """UPDATE `table` once per row of `rows` where its `match` columns (column → field of the
        row) equal the row's fields and `where` holds; `values(fields)` is the SET clause, given
        each field as a column expression; `types` are the fields' types. Returns the match
        tuples (in `match` order) of the rows updated."""

    @abc.abstractmethod
    def lock(self, name: str, wait: bool) -> bool:
        """A lock on `name` until this transaction ends; False when `wait` is off and another
        transaction holds it. Taken again in the same transaction, it is granted; refused to a
        try of `pairs_both` in this transaction, a try (`wait` off) is refused again at once."""


class PostgresSql(Deferred, Sql):
    """Its `check`s and `execute_later`s travel with the next statement (deferred.py)."""

    _named: dict[Hashable, tuple[str, dict[str, object]]] = {}

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._locked: set[str] = set()  # names whose lock this transaction holds
        self._refused: set[str] = set()  # names whose lock a try in this transaction did not get
        self._deferred_init()

    def _dialect(self):
        return self.conn.dialect

    def _run(self, sql: str, params: dict[str, object]) -> psycopg.Cursor:
        return self._run_deferred(sql, params)

    def check(self, key, build, params, failed) -> None:
        self.check_later(*self._text(key, build, params), failed)

    def execute_later(self, key, build, params, table: str) -> None:
        self.later(table, *self._text(key, build, params))

    def insert(self, table):
        return postgresql.insert(table)

    def in_list(self, column_, name: str):
        return column_ == any_(bindparam(name, type_=ARRAY(column_.type)))

    def _rows(self, table, rows: list[dict], finish: Callable | None = None) -> tuple[str, dict[str, object]]:
        """The INSERT of `rows` into `table` from one JSON recordset parameter, `finish` adding
        ON CONFLICT / RETURNING to the statement: its text and parameters."""
        cols = tuple(rows[0])

        def build():
            u = recordset({c: table.c[c].type for c in cols})
            stmt = self.insert(table).from_select(list(cols), select(*(u.c[c] for c in cols)))
            return finish(stmt) if finish else stmt

        key = (table.name, cols, getattr(finish, "__code__", None))  # `finish`'s code: its call site
        return self._text(key, build, {recordset_tag(cols): json_rows(rows, cols)})

    def write(self, table, rows: list[dict], finish: Callable | None = None) -> None:
        if rows:
            self.later(table.name, *self._rows(table, rows, finish))

    def insert_new(self, table, key: str, rows: Mapping[str, dict]) -> set[str]:
        column_ = table.c[key]
        sql, params = self._rows(
            table, list(rows.values()), lambda stmt: stmt.on_conflict_do_nothing().returning(column_)
        )
        return {row[0] for row in self._insert_fenced(sql, params, key).fetchall()}

    def pairs(
        self, key: str, query, c1, c2, pairs: list[tuple[str, str]], order_by: Sequence[str] = ()
    ) -> Iterator:
        if not pairs:
            return iter(())
        types = {"k1": c1.type, "k2": c2.type}

        def build():
            u = recordset(types)
            # OFFSET 0 keeps the planner from flattening the LATERAL into a plain join
            hits = built(query).where(c1 == u.c.k1, c2 == u.c.k2).offset(0).lateral("hits")
            return select(*hits.c).select_from(u).join(hits, true()).order_by(*(hits.c[n] for n in order_by))

        rows = json_rows([{"k1": a, "k2": b} for a, b in pairs], ("k1", "k2"))
        return iter(self.execute(("pairs", key), build, {recordset_tag(types): rows}))

    def pairs_both(
        self, first: tuple, second: tuple, try_locks: Sequence[str] = ()
    ) -> tuple[Iterator, Iterator]:
        locks = sorted(set(try_locks) - self._locked)
        if (not first[4] or not second[4]) and not locks:
            return self.pairs(*first), self.pairs(*second)
        lookups = (first, second)
        asked = tuple(n for n, q in enumerate(lookups) if q[4])  # the lookups with pairs to look up

        def build():
            # each lookup's rows as (n, a JSON array of its columns): one column shape for all;
            # the locks' as (2, [name, got])
            selects = []
            for n in asked:
                _, query, c1, c2, _, _ = lookups[n]
                u = recordset({"k1": c1.type, "k2": c2.type}, f"pairs{n}")
                hits = built(query).where(c1 == u.c.k1, c2 == u.c.k2).offset(0).lateral(f"hits{n}")
                selects.append(
                    select(literal(n), func.json_build_array(*hits.c)).select_from(u).join(hits, true())
                )
            if locks:
                names = func.unnest(bindparam("locks", type_=ARRAY(Text()))).table_valued("name")
                got = func.pg_try_advisory_xact_lock(func.hashtext(names.c.name))
                selects.append(select(literal(2), func.json_build_array(names.c.name, got)))
            return union_all(*selects) if len(selects) > 1 else selects[0]

        params: dict[str, object] = {
            f"pairs{n}": json_rows([{"k1": a, "k2": b} for a, b in lookups[n][4]], ("k1", "k2"))
            for n in asked
        }
        if locks:
            params["locks"] = locks
        found: tuple[list, list, list] = ([], [], [])
        for n, row in self.execute(("pairs_both", first[0], second[0], asked, bool(locks)), build, params):
            found[n].append(tuple(row))
        for name, got in found[2]:
            (self._locked if got else self._refused).add(name)
        for (key, query, _, _, _, order_by), rows in zip(lookups, found[:2], strict=True):
            if order_by:  # a union keeps no order: the lookup's own, by its columns' places
                places = _places.get(key)
                if places is None:
                    names = list(built(query).selected_columns.keys())
                    places = _places[key] = [names.index(name) for name in order_by]
                rows.sort(key=lambda row: [row[i] for i in places])
        return iter(found[0]), iter(found[1])

    def update_each(self, key, table, match, where, types, rows, values) -> set[tuple]:
        cols = tuple(rows[0])
        fields = {k: types[k] for k in cols}

        def build():
            u = recordset(fields)
            return (
                update(table)
                .where(*(table.c[c] == u.c[f] for c, f in match.items()), where)
                .values(**values(u.c))
                .returning(*(table.c[c] for c in match))
            )

        sql, params = self._text((key, cols), build, {recordset_tag(fields): json_rows(rows, cols)})
        updated = self._fenced(sql, params, tuple(match))  # the fence kept travels with it
        return {tuple(row) for row in updated.fetchall()}

    def lock(self, name: str, wait: bool) -> bool:
        if name in self._locked:
            return True
        if name in self._refused and not wait:
            return False
        fn = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        (got,) = self.execute(
            ("lock", fn), lambda: text(f"SELECT {fn}(hashtext(:p))"), {"p": name}
        ).fetchone()
        if got or wait:
            self._locked.add(name)
            return True
        return False


class SqliteSql(Sql):
    _named: dict[Hashable, tuple[str, dict[str, object]]] = {}
    _many: dict[Hashable, tuple[str, Callable, dict[str, object]]] = {}  # key → (SQL, row → tuple, literals)
    _NAMED = pysqlite.dialect(paramstyle="named")

    def _dialect(self):
        return self._NAMED

    def _run(self, sql: str, params: dict[str, object]) -> sqlite3.Cursor:
        if any(type(v) is list for v in params.values()):  # a list: one JSON text, read by json_each
            params = {k: dumps(v) if type(v) is list else v for k, v in params.items()}
        return self._driver.execute(sql, params)  # type: ignore[union-attr]

    def insert(self, table):
        return sqlite.insert(table)

    def in_list(self, column_, name: str):
        return column_.in_(select(func.json_each(bindparam(name)).table_valued("value").c.value))

    def _executemany(self, key: Hashable, build: Build, rows: list[dict]) -> None:
        """The statement once per row, compiled once per `key` (positional), rows as tuples."""
        entry = self._many.get(key)
        if entry is None:
            compiled = build().compile(dialect=self.conn.dialect, column_keys=list(rows[0]))  # type: ignore[attr-defined]
            order = compiled.positiontup
            fixed = {k: v for k, v in compiled.params.items() if k not in rows[0]}  # the statement's literals
            getter = operator.itemgetter(*order)
            row_of = (lambda r: (getter(r),)) if len(order) == 1 else getter
            entry = self._many[key] = (str(compiled), row_of, fixed)
        sql, row_of, fixed = entry
        if fixed:
            rows = [{**fixed, **r} for r in rows]
        self._driver.executemany(sql, [row_of(r) for r in rows])  # type: ignore[union-attr]

    def write(self, table, rows: list[dict], finish: Callable | None = None) -> None:
        if not rows:
            return
        self._executemany(
            (table.name, tuple(rows[0]), getattr(finish, "__code__", None)),
            lambda: finish(self.insert(table)) if finish else self.insert(table),
            rows,
        )

    def insert_new(self, table, key: str, rows: Mapping[str, dict]) -> set[str]:
        column_ = table.c[key]
        there = {
            row[0]
            for row in self.execute(
                (table.name, "there"),
                lambda: select(column_).where(self.in_list(column_, "keys")),
                {"keys": list(rows)},
            )
        }
        new = [row for k, row in rows.items() if k not in there]
        self.write(table, new, lambda stmt: stmt.on_conflict_do_nothing())
        return {row[key] for row in new}

    def pairs(
        self, key: str, query, c1, c2, pairs: list[tuple[str, str]], order_by: Sequence[str] = ()
    ) -> Iterator:
        if not pairs:
            return iter(())

        def build():
            each = func.json_each(bindparam("pairs")).table_valued("value")
            wanted = select(func.json_extract(each.c.value, "$[0]"), func.json_extract(each.c.value, "$[1]"))
            q = built(query)
            return q.order_by(*(q.selected_columns[n] for n in order_by)).where(tuple_(c1, c2).in_(wanted))

        return iter(self.execute(("pairs", key), build, {"pairs": pairs}))

    def update_each(self, key, table, match, where, types, rows, values) -> set[tuple]:
        (first, field), *_ = match.items()
        cols = [table.c[c] for c in match]
        current = self.execute(
            (key, "current"),
            lambda: select(*cols).where(self.in_list(table.c[first], "ids"), where),
            {"ids": sorted({r[field] for r in rows})},
        )
        found = set(current)
        fields = tuple(match.values())
        todo = [r for r in rows if tuple(r[f] for f in fields) in found]
        if todo:

            def build():
                params = {f: bindparam(f, type_=t) for f, t in types.items()}
                return (
                    update(table)
                    .where(*(table.c[c] == params[f] for c, f in match.items()))
                    .values(**values(params))
                )

            self._executemany((key, tuple(todo[0])), build, todo)
        return {tuple(r[f] for f in fields) for r in todo}

    def lock(self, name: str, wait: bool) -> bool:
        return True  # a SQLite transaction (BEGIN IMMEDIATE) holds the database's write lock
