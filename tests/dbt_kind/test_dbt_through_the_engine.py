"""The dbt kind through the engine, dbt for real: a day whose data passes the tests announces
every model built and everything downstream runs; a day whose staging model fails its test holds
that model's downstream (a failed event naming the test), its dbt child is skipped (no event, a
line saying why), and the independent model built in the same invocation goes on."""

from __future__ import annotations

from pathlib import Path

from coordinator.engine import Coordinator
from coordinator.events import CompletionEvent, Status
from coordinator.rundirs import attempt_log
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from tests.el.conftest import publish, published

SPEC = """
datasets:
  shop.ready: {partitioning: daily}
jobs:
  transform:
    kind: dbt
    inputs: [shop.ready]
    outputs: [shop.main.stg_orders, shop.main.order_totals, reporting.customers]
    timeout_s: 300
    settings:
      project_dir: "${PROJECT}"
      datasets: {customers: reporting.customers}
      catalog: true
  orders_sync:
    kind: command
    inputs: [shop.main.stg_orders]
    settings: {command: ["true"]}
  totals_report:
    kind: command
    inputs: [shop.main.order_totals]
    settings: {command: ["true"]}
  customers_sync:
    kind: command
    inputs: [reporting.customers]
    settings: {command: ["true"]}
"""


def test_a_failing_test_holds_downstream_of_its_model_and_skipped_nodes_are_said(
    dbt_project: Path, settings: Settings
) -> None:
    spec = parse_spec(SPEC, env={"PROJECT": str(dbt_project)})
    publish(settings, [CompletionEvent(dataset="shop.ready", partition="2026-01-01")])
    with Coordinator(spec, settings) as coord:
        first = coord.run(until_idle=True, timeout_s=300)
        assert (first.succeeded, first.failed, first.blocked) == (4, 0, 0)
        publish(settings, [CompletionEvent(dataset="shop.ready", partition="2026-01-02")])
        second = coord.run(until_idle=True, timeout_s=300)
        assert (second.succeeded, second.failed, second.blocked) == (1, 0, 1)
        with coord.store.begin() as tx:
            [transform] = tx.list_runs(job="transform", partition="2026-01-02")
            later = {
                job: tx.list_runs(job=job, partition="2026-01-02")
                for job in ("orders_sync", "totals_report", "customers_sync")
            }
    assert transform.state == "blocked" and "\n" not in transform.error
    assert "model.shop.stg_orders: held: dbt tests failed: no_negative_amounts (fail:" in transform.error
    assert "not built: model.shop.order_totals" in transform.error
    assert later["orders_sync"] == [] and later["totals_report"] == []  # held, and never announced
    assert [r.state for r in later["customers_sync"]] == ["succeeded"]

    events = {(e.dataset, e.partition): e for e in published(settings, "observer")}
    day1 = events[("shop.main.stg_orders", "2026-01-01")]
    assert day1.status is Status.SUCCEEDED and day1.location == "shop.main.stg_orders"
    assert day1.attributes["dbt_unique_id"] == "model.shop.stg_orders"
    held = events[("shop.main.stg_orders", "2026-01-02")]
    assert held.status is Status.FAILED and "no_negative_amounts" in held.error
    assert ("shop.main.order_totals", "2026-01-01") in events
    assert ("shop.main.order_totals", "2026-01-02") not in events  # skipped: no event at all
    customers = events[("reporting.customers", "2026-01-02")]
    assert customers.status is Status.SUCCEEDED
    assert [(c.name, c.type) for c in customers.columns] == [
        ("id", "INTEGER"),
        ("name", "VARCHAR"),
    ]  # catalog
    assert not any(d == "shop.main.orders" for d, _ in events)  # the seed is built, not an output

    text = attempt_log(settings.home, transform.run_id, transform.attempt).read_text()
    assert "model.shop.order_totals: skipped by dbt: upstream model.shop.stg_orders failed, was held" in text
    assert "seed.shop.orders (shop.main.orders) built, not an output of the job: no event" in text
