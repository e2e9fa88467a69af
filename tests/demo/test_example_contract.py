"""The example's contract on the raw events, for real: the app starts sending `amount` as text,
dlt loads it (the load succeeds, its event types the column string), and the dbt build is
blocked naming the column — nothing downstream runs on it."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from coordinator.demo import landing
from coordinator.demo.journey import load_example
from coordinator.demo.settings import DemoOptions, demo_settings
from coordinator.publish import Publisher
from coordinator.service import Service

DAY = date(2025, 6, 3)


def amount_as_text(export_dir, day: date) -> None:
    [file] = (export_dir / "events" / f"date={day.isoformat()}").glob("*.parquet")
    table = pq.read_table(file)
    column = table.schema.get_field_index("amount")
    pq.write_table(table.set_column(column, "amount", pc.cast(table["amount"], pa.string())), file)


def test_a_retyped_column_from_the_app_blocks_the_build_naming_it(tmp_path) -> None:
    options = DemoOptions(home=tmp_path / "home", days=1, users=30)
    settings = demo_settings(options)
    settings.home.mkdir(parents=True)
    spec = load_example(options, settings)
    landing.export(options.app_export, [DAY], options.users)
    amount_as_text(options.app_export, DAY)
    changed = landing.describe(options.app_export, DAY)
    with Service(spec, settings, log_runs=False, fire_schedules=False) as service:
        with Publisher(service.bus, settings) as publisher:
            landing.publish_all(publisher, [changed.event(), *landing.ticks(spec, [DAY])])
        stats = service.run(until_idle=True, timeout_s=300)
        with service.store.begin() as tx:
            runs = {r.job: r for r in tx.list_runs(limit=50)}

    assert runs["load_app"].state == "succeeded"
    assert stats.launched == 1                              # the load only
    blocked = runs["reporting"]
    assert blocked.state == "blocked"
    assert "column amount is string, the contract says double" in (blocked.error or "")
    assert set(runs) == {"load_app", "reporting"}           # nothing after the build ran
