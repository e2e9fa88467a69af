"""Under `coord serve` the example's schedule starts the journey: at 06:00 UTC its tick for the
day before, with that day's export announced, launches the load — the tick alone does not.
On an injected clock, with stub launchers standing in for the jobs (the journey's real runs are
test_demo_embedded.py's)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

from coordinator.bus.local import LocalBus
from coordinator.demo import landing
from coordinator.demo.journey import load_example
from coordinator.demo.settings import DemoOptions, demo_settings
from coordinator.engine import Coordinator
from coordinator.launchers.stub import StubLauncher
from coordinator.publish import Publisher
from coordinator.ticker import attach

DAY = date(2025, 6, 3)
MORNING_AFTER = datetime(2025, 6, 4, 6, 0, 30, tzinfo=UTC)  # 30 s after the 06:00 tick


def test_the_0600_tick_and_the_days_export_start_the_load_for_the_day_before(tmp_path) -> None:
    options = DemoOptions(home=tmp_path / "home", days=1, users=10)
    settings = demo_settings(options, bus="local")
    settings.home.mkdir(parents=True)
    spec = load_example(options, settings)
    offset = MORNING_AFTER.timestamp() - time.time()
    stubs = {kind: StubLauncher(settings, kind=kind) for kind in {job.kind for job in spec.jobs.values()}}
    bus = LocalBus(settings.home / "bus.db")
    with Coordinator(spec, settings, bus=bus, launchers=stubs, clock=lambda: time.time() + offset) as coord:
        ticker = attach(coord)
        assert ticker is not None
        coord.run(until_idle=True, timeout_s=60)
        assert ticker.fired == 1                    # the tick for 2025-06-03, fired on the clock
        assert stubs["el"].ran() == []              # ... but the app's export is not there yet

        [day] = landing.export(options.app_export, [DAY], options.users)
        with Publisher(bus, settings) as publisher:
            landing.publish_all(publisher, [day.event()])
        coord.run(until_idle=True, timeout_s=60)
        with coord.store.begin() as tx:
            [run] = tx.list_runs(job="load_app")

    assert stubs["el"].ran() == [("load_app", DAY.isoformat())]
    # it consumed the tick the schedule fired — the very event `coord demo` announces for the day
    inputs = {v.dataset: v for v in run.inputs}
    assert set(inputs) == {"schedule.daily_0600", "app.export"}
    tick = inputs["schedule.daily_0600"]
    assert tick.partition == DAY.isoformat()
    assert tick.event_id == landing.tick_for("daily_0600", spec.schedules["daily_0600"], DAY).event_id
