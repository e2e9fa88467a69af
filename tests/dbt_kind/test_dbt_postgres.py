"""The dbt kind with dbt-postgres on the real server: the same project, `target: pg`, a day whose
staging model fails its test — held, its child skipped, the independent model built."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from coordinator.launchers.dbt import DbtLauncher
from coordinator.settings import Settings
from tests.el.conftest import run_once

pytestmark = pytest.mark.postgres


def test_a_failing_test_on_postgres(dbt_project: Path, settings: Settings, postgres_url: str, tmp_path: Path):
    url = urlsplit(postgres_url)
    env = {
        "PGHOST": url.hostname,
        "PGPORT": str(url.port),
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.path.lstrip("/"),
    }
    job = {
        "project_dir": str(dbt_project),
        "target": "pg",
        "datasets": {
            "stg_orders": "shop.stg_orders",
            "order_totals": "shop.order_totals",
            "customers": "shop.customers",
        },
    }
    outputs = ["shop.stg_orders", "shop.order_totals", "shop.customers"]
    result = run_once(DbtLauncher(settings), tmp_path / "run", job, "2026-01-02", outputs, env=env)
    assert not result.succeeded and result.details["blocked"] is True, result.error
    status = {o.dataset: o.status for o in result.outputs}
    assert status == {
        "shop.stg_orders": "failed",
        "shop.order_totals": "skipped",
        "shop.customers": "succeeded",
    }
    [customers] = [o for o in result.outputs if o.dataset == "shop.customers"]
    assert customers.location == f"{url.path.lstrip('/')}.public.customers"
    assert "no_negative_amounts" in result.error
