"""The pieces the store's statements are built of, for both databases: `greatest`/`least`, the
PostgreSQL JSON recordset (many rows as one parameter: see sql.py's docstring for why), and
turning a driver cursor's rows into dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from psycopg.types.json import Json
from sqlalchemy import bindparam, column, func
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from coordinator.store.rows import dumps


class greatest(FunctionElement):
    """`greatest(a, b)`; SQLite's two-argument `max` is the same."""

    name = "greatest"
    inherit_cache = True


class least(FunctionElement):
    """`least(a, b)`; SQLite's two-argument `min` is the same."""

    name = "least"
    inherit_cache = True


@compiles(greatest)
@compiles(least)
def _compile_extreme(element, compiler, **kw) -> str:
    return f"{element.name}({compiler.process(element.clauses, **kw)})"


@compiles(greatest, "sqlite")
@compiles(least, "sqlite")
def _compile_extreme_sqlite(element, compiler, **kw) -> str:
    name = "max" if element.name == "greatest" else "min"
    return f"{name}({compiler.process(element.clauses, **kw)})"


def built(query):
    """A query given as itself or as the function that builds it."""
    return query() if callable(query) else query


def recordset_tag(names: Iterable[str]) -> str:
    """The recordset parameter's name, of its columns' names (a types mapping's keys)."""
    return "rows_" + "_".join(names)[:40]


def json_rows(rows: list[dict], cols: Sequence[str]) -> Json:
    """The JSON recordset parameter (orjson; the rows as they are when they have just `cols`)."""
    if len(rows[0]) != len(cols):
        rows = [{c: r[c] for c in cols} for r in rows]
    return Json(rows, dumps=dumps)


def recordset(types: Mapping[str, object], name: str | None = None):
    """PostgreSQL rows from one JSON parameter: `json_to_recordset(:rows_...) AS (name type, ...)`,
    the parameter named `name` or by `recordset_tag(types)` and given by `json_rows`."""
    cols = [column(c, t) for c, t in types.items()]
    tag = bindparam(name or recordset_tag(types), type_=JSON)
    return func.json_to_recordset(tag).table_valued(*cols).render_derived(with_types=True)


def rows_of(cursor) -> Iterable[dict]:
    """A driver cursor's rows as dicts by column name."""
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
