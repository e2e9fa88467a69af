"""What starts the example journey: the app's daily export, and the schedule's ticks for its days."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow.parquet as pq
import pytest

from coordinator import schedules as S
from coordinator.codec import codec_for
from coordinator.demo.landing import days_ending, export, tick_for, ticks
from coordinator.demo.settings import example_dir
from coordinator.settings import Settings
from coordinator.spec import load_spec


def test_days_ending_is_consecutive_and_oldest_first() -> None:
    assert days_ending(date(2025, 3, 1), 3) == [date(2025, 2, 27), date(2025, 2, 28), date(2025, 3, 1)]


def test_each_exported_day_is_described_by_its_event(tmp_path) -> None:
    exported = export(tmp_path, days_ending(date(2025, 6, 3), 2), n_users=40, seed=3)
    assert [(e.partition, e.event().dataset, e.event().producer) for e in exported] == [
        ("2025-06-02", "app.export", "app"), ("2025-06-03", "app.export", "app")]
    codec = codec_for(Settings(home=tmp_path))
    for day in exported:
        event = day.event()
        users = pq.read_table(tmp_path / "users" / f"date={day.partition}")
        events = pq.read_table(tmp_path / "events" / f"date={day.partition}")
        assert day.rows == {"users": users.num_rows, "events": events.num_rows}
        assert users.num_rows == 40 and events.num_rows > 0
        assert event.row_count == users.num_rows + events.num_rows
        assert event.location == str(tmp_path.resolve())
        assert codec.decode(codec.encode(event)) == event


def test_same_data_same_event_id_changed_data_new_one(tmp_path) -> None:
    day = days_ending(date(2025, 6, 3), 1)
    first = [e.event().event_id for e in export(tmp_path / "a", day, n_users=30, seed=1)]
    again = [e.event().event_id for e in export(tmp_path / "a", day, n_users=30, seed=1)]
    changed = [e.event().event_id for e in export(tmp_path / "a", day, n_users=30, seed=2)]
    assert first == again
    assert not set(first) & set(changed)


def test_the_demo_announces_the_tick_the_schedule_fires_for_each_day() -> None:
    spec = load_spec(example_dir() / "pipeline.yaml")
    [tick] = ticks(spec, [date(2025, 6, 3)])
    schedule = spec.schedules["daily_0600"]
    # what the ticker fires at 06:00 on the next morning: the same event, for the same day
    before, after = datetime(2025, 6, 4, 5, tzinfo=UTC), datetime(2025, 6, 4, 7, tzinfo=UTC)
    [fired] = S.due("daily_0600", schedule, before, after)
    assert tick == fired.event()
    assert (tick.dataset, tick.partition) == ("schedule.daily_0600", "2025-06-03")


def test_a_tick_in_another_zone_and_offset_stands_for_the_day_asked() -> None:
    berlin = S.ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin", partition="0d")
    tick = tick_for("night", berlin, date(2025, 3, 30))           # the spring-forward night
    assert tick.partition == "2025-03-30"
    assert tick.produced_at == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)   # 03:30 CEST, the gap's length later
    with pytest.raises(ValueError, match="does not tick for days"):
        tick_for("hourly", S.ScheduleSpec(cron="0 * * * *", partition="-1h"), date(2025, 3, 30))
