"""The HA tests' shared fixture: an empty state store, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.store import StateStore
from coordinator.store.schema import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with StateStore(url) as store:
        with store.begin() as tx:
            for table in reversed(metadata.sorted_tables):
                if table.name != "coord_schema_version":
                    tx.conn.execute(table.delete())
        yield store
