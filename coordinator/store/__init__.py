"""The state store: `StateStore` opens it, `Tx` is one transaction (store.py, which lists the
rooms a `Tx` is composed of); tables in schema.py, migrations in migrations.py."""

from coordinator.store.store import RunRow, StateStore, Tx

__all__ = ["RunRow", "StateStore", "Tx"]
