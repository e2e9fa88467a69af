"""The el kind into PostgreSQL (the production destination) on the real server: two days merged
into one table, the password given apart from the URL and never in the events, the type change
of the second day in the event's columns."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from coordinator.launchers.el import ElLauncher
from coordinator.settings import Settings
from tests.el.conftest import run_once

pytestmark = pytest.mark.postgres


def test_two_days_into_postgres(project: Path, settings: Settings, postgres_url: str, tmp_path: Path) -> None:
    url = urlsplit(postgres_url.replace("postgresql+psycopg://", "postgresql://", 1))
    without_password = f"postgresql://{url.username}@{url.hostname}:{url.port}{url.path}"
    job = {
        "source": "shop_source:shop",
        "project_dir": str(project),
        "dataset_name": "raw",
        "destination": {"type": "postgres", "url": without_password, "password": url.password},
    }
    launcher = ElLauncher(settings)
    first = run_once(launcher, tmp_path / "d1", job, "2026-01-01", ["raw.orders"])
    assert first.succeeded, first.error
    second = run_once(launcher, tmp_path / "d2", job, "2026-01-02", ["raw.orders"])
    assert second.succeeded, second.error
    [orders] = second.outputs
    assert orders.row_count == 2
    assert orders.location == f"postgresql://{url.hostname}:{url.port}{url.path}#raw.orders"
    assert {c.name: c.type for c in orders.columns}["amount"] == "variant(bigint,string)"
    assert url.password not in (tmp_path / "d2" / "log").read_text()
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain) as conn:
        rows = conn.execute("select id, amount, amount__v_text from raw.orders order by id").fetchall()
    assert rows == [(1, 30, None), (2, 45, None), (3, 12, None), (4, None, "12.5 EUR")]
