"""One tiny dbt project (dbt-core + dbt-duckdb, offline) for the whole session: a seed of two
days of orders, a staging model of the run's partition with a test that refuses negative amounts
(2026-01-02 has one), a model downstream of it, and an independent model. It is parsed once, so
its target/manifest.json is there for the spec's checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.el.conftest import settings  # noqa: F401 — the same embedded-home settings

PROJECT = {
    "dbt_project.yml": (
        "name: shop\nversion: '1.0'\nprofile: shop\nconfig-version: 2\n"
        "models:\n  shop:\n    +materialized: table\n"
    ),
    "seeds/orders.csv": "id,day,amount\n1,2026-01-01,30\n2,2026-01-01,45\n3,2026-01-02,12\n4,2026-01-02,-5\n",
    "models/stg_orders.sql": (
        "select id, day, amount, '{{ var(\"window_start\") }}' as window_start\n"
        "from {{ ref('orders') }} where day = '{{ var(\"partition\") }}'"
    ),
    "models/order_totals.sql": "select day, sum(amount) as total from {{ ref('stg_orders') }} group by day",
    "models/customers.sql": "select 1 as id, 'ada' as name",
    "tests/no_negative_amounts.sql": "select * from {{ ref('stg_orders') }} where amount < 0",
    "models/schema.yml": (
        "version: 2\nmodels:\n  - name: stg_orders\n    columns:\n"
        "      - name: id\n        data_type: integer\n"
        "      - name: day\n        data_type: date\n"
        "      - name: amount\n        data_type: integer\n"
    ),
}


# the same project on PostgreSQL (dbt-postgres), where the harness has it: `target: pg`
PG_TARGET = """    pg:
      type: postgres
      schema: public
      threads: 1
      host: "{{ env_var('PGHOST', 'localhost') }}"
      port: "{{ env_var('PGPORT', '5432') | as_number }}"
      user: "{{ env_var('PGUSER', 'none') }}"
      password: "{{ env_var('PGPASSWORD', '') }}"
      dbname: "{{ env_var('PGDATABASE', 'none') }}"
"""


@pytest.fixture(scope="session")
def dbt_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dbt_shop")
    for name, text in PROJECT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: '{root / 'shop.duckdb'}'\n      threads: 1\n" + PG_TARGET
    )
    dbt = Path(sys.executable).parent / "dbt"
    done = subprocess.run(
        [
            str(dbt),
            "parse",
            "--project-dir",
            str(root),
            "--profiles-dir",
            str(root),
            "--no-send-anonymous-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    return root
