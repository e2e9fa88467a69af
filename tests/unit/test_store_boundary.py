"""Nothing outside coordinator/store touches the store's tables or a transaction's connection.

The store's rooms (coordinator/store/*.py) are the only code that knows the schema; everyone
else (the package and its benchmarks) calls named `Tx` methods. Checked on the source (AST),
so a new shortcut fails here with the file and line, not in production on the other database.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "coordinator"
STORE = PACKAGE / "store"
CHECKED = (PACKAGE, ROOT / "bench")  # the product and its benchmarks (tests may set up tables)
SCHEMA = "coordinator.store.schema"
PRIVATE = {"conn", "sql", "pg"}  # a Tx's connection, statement runner and dialect: the store's own


def _transaction_names(tree: ast.AST) -> set[str]:
    """Names bound to a transaction: `with ....begin() as NAME`, parameters annotated `Tx`, `tx`."""
    names = {"tx"}
    for node in ast.walk(tree):
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                call = item.context_expr
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "begin"
                    and isinstance(item.optional_vars, ast.Name)
                ):
                    names.add(item.optional_vars.id)
        elif isinstance(node, ast.arg) and node.annotation is not None and _is_tx(node.annotation):
            names.add(node.arg)
    return names


def _is_tx(annotation: ast.expr) -> bool:
    return "Tx" in ast.unparse(annotation).replace("'", "").replace('"', "").split(".")


def violations(source: str, filename: str) -> list[str]:
    """Where `source` imports the store's schema or reaches into a transaction."""
    tree = ast.parse(source, filename)
    tx_names = _transaction_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if (
                node.module == SCHEMA
                or node.module.startswith(SCHEMA + ".")
                or (node.module == "coordinator.store" and "schema" in names)
            ):
                found.append(f"{filename}:{node.lineno}: imports the store's schema")
        elif isinstance(node, ast.Import):
            if any(a.name == SCHEMA or a.name.startswith(SCHEMA + ".") for a in node.names):
                found.append(f"{filename}:{node.lineno}: imports the store's schema")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in PRIVATE
            and isinstance(node.value, ast.Name)
            and node.value.id in tx_names
        ):
            found.append(f"{filename}:{node.lineno}: uses {node.value.id}.{node.attr} of a transaction")
    return sorted(found, key=lambda line: int(line.split(":")[1]))


def test_no_module_outside_the_store_touches_tables_or_connections() -> None:
    found = []
    for path in sorted(p for folder in CHECKED for p in folder.rglob("*.py")):
        if STORE in path.parents:
            continue
        found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "use (or add) a named store method instead:\n" + "\n".join(found)


def test_the_check_sees_each_kind_of_shortcut() -> None:
    source = """
from coordinator.store import schema as S
from coordinator.store.schema import runs
import coordinator.store.schema

def rows(store, t: "Tx"):
    with store.begin() as txn:
        txn.conn.execute(None)
    t.sql.execute("k", None, {})
    tx.conn.execute(None)
    if tx.pg:
        pass
"""
    found = violations(source, "example.py")
    assert [line.split(": ", 1)[1] for line in found] == [
        "imports the store's schema",
        "imports the store's schema",
        "imports the store's schema",
        "uses txn.conn of a transaction",
        "uses t.sql of a transaction",
        "uses tx.conn of a transaction",
        "uses tx.pg of a transaction",
    ]


def test_a_module_of_its_own_with_a_connection_is_fine() -> None:
    source = """
class Bus:
    def begin(self):
        self.conn.execute("BEGIN IMMEDIATE")
"""
    assert violations(source, "bus.py") == []
