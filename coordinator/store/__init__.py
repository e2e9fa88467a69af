"""The state store: SQLAlchemy Core tables (schema.py), migrations, and the store (store.py)."""

from coordinator.store.store import RunRow, StateStore, Tx

__all__ = ["RunRow", "StateStore", "Tx"]
