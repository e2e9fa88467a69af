"""The el kind through the engine: dlt loads a day's orders into DuckDB and announces each
table with its rows and columns; when the source starts sending an amount as text, the event
says so (dlt's variant column) and the downstream job's contract blocks, naming the column."""

from __future__ import annotations

import sys
from pathlib import Path

from coordinator.engine import Coordinator
from coordinator.events import CompletionEvent, Status
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from tests.el.conftest import publish, published

SPEC = """
datasets:
  shop.ready: {partitioning: daily}
jobs:
  load_shop:
    kind: el
    inputs: [shop.ready]
    outputs: [raw.orders, raw.customers]
    timeout_s: 300
    settings:
      source: shop_source:shop
      project_dir: ${PROJECT}
      destination: {type: duckdb, path: "${LAKE}/shop.duckdb"}
      dataset_name: raw
  order_totals:
    kind: command
    inputs: [raw.orders]
    outputs: [reports.order_totals]
    contract:
      raw.orders: [{name: id, type: bigint}, {name: amount, type: bigint}]
    settings:
      command: ["${PYTHON}", "${PROJECT}/totals.py", "${LAKE}/shop.duckdb", "{partition}"]
"""
TOTALS = """
import sys, duckdb
query = "select sum(amount) from raw.orders where day = ?"
print(duckdb.connect(sys.argv[1], read_only=True).execute(query, [sys.argv[2]]).fetchall())
"""


def test_a_type_change_upstream_blocks_the_contracted_job_naming_the_column(
    project: Path, settings: Settings, tmp_path: Path
) -> None:
    (project / "totals.py").write_text(TOTALS)
    env = {"PROJECT": str(project), "LAKE": str(tmp_path / "lake"), "PYTHON": sys.executable}
    spec = parse_spec(SPEC, env=env)
    publish(settings, [CompletionEvent(dataset="shop.ready", partition="2026-01-01")])
    with Coordinator(spec, settings) as coord:
        first = coord.run(until_idle=True, timeout_s=300)
        assert (first.succeeded, first.failed, first.blocked) == (2, 0, 0)
        publish(settings, [CompletionEvent(dataset="shop.ready", partition="2026-01-02")])
        second = coord.run(until_idle=True, timeout_s=300)
        assert (second.succeeded, second.failed, second.blocked) == (1, 0, 1)
        with coord.store.begin() as tx:
            [blocked] = tx.list_runs(job="order_totals", partition="2026-01-02")
    assert blocked.state == "blocked"
    assert (
        "raw.orders[2026-01-02]" in blocked.error
        and "column amount is variant(bigint,string)" in blocked.error
    )

    events = {(e.dataset, e.partition): e for e in published(settings, "observer")}
    day1, day2 = events[("raw.orders", "2026-01-01")], events[("raw.orders", "2026-01-02")]
    assert day1.row_count == 2 and day2.row_count == 2
    assert {c.name: c.type for c in day1.columns} == {
        "id": "bigint",
        "amount": "bigint",
        "day": "string",
        "loaded_for": "timestamp",
        "_dlt_load_id": "string",
        "_dlt_id": "string",
    }
    types = {c.name: c.type for c in day2.columns}
    assert types["amount"] == "variant(bigint,string)" and types["amount__v_text"] == "string"
    assert types["coupon"] == "string"  # the new column reaches the event too
    assert day2.location == f"duckdb://{tmp_path / 'lake' / 'shop.duckdb'}#raw.orders"
    assert day2.attributes["dlt_table"] == "orders" and day2.attributes["job"] == "load_shop"
    assert events[("raw.customers", "2026-01-02")].row_count == 2
    assert not any(d.startswith(("raw._dlt", "_dlt")) for d, _ in events)  # dlt's own tables: no events
    totals = events[("reports.order_totals", "2026-01-01")]
    assert totals.status is Status.SUCCEEDED
    held = events[("reports.order_totals", "2026-01-02")]
    assert held.status is Status.FAILED and "amount" in held.error
