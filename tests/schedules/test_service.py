"""The service wires the ticker: `coord run`/`coord serve` fire the spec's schedules on the real
clock, run the job that takes the tick, and publish the tick on the bus once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from coordinator.bus.local import LocalBus
from coordinator.intake import EventIntake
from coordinator.service import Service
from coordinator.settings import Settings
from coordinator.spec import parse_spec


def test_a_service_fires_the_latest_missed_tick_and_runs_its_job(tmp_path: Path):
    start = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    spec = parse_spec(f"""
schedules:
  nightly: {{cron: "0 0 * * *", start: {start}, catch_up: latest}}
jobs:
  report: {{kind: command, inputs: [schedule.nightly], outputs: [report], settings: {{command: "true"}}}}
""")
    settings = Settings(home=tmp_path / "home", bus="local")
    settings.home.mkdir()
    succeeded = []
    for _ in range(2):  # the second service (a restart) finds the tick recorded: nothing new
        with Service(spec, settings, log_runs=False) as service:
            stats = service.run(until_idle=True, timeout_s=60)
            succeeded.append((stats.runs_created, stats.launched, stats.succeeded))
            with service.store.begin() as tx:
                runs = tx.list_runs("report", limit=None)
    today = datetime.now(UTC).date()
    assert succeeded == [(1, 1, 1), (0, 0, 0)] and [(r.partition, r.state) for r in runs] == [
        ((today - timedelta(days=1)).isoformat(), "succeeded")
    ]
    with EventIntake(LocalBus(settings.home / "bus.db"), settings, group_id="observer") as intake:
        seen = []
        while batch := intake.poll(1000, 0.2).events:
            seen += batch
    ticks = [e for e in seen if e.dataset == "schedule.nightly"]
    assert len(ticks) == 1 and ticks[0].produced_at == datetime.combine(today, datetime.min.time(), UTC)
    assert ticks[0].producer == "coordinator.schedule"
