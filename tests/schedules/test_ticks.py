"""When ticks fall, pure: cron in a zone, DST edges, the partition a tick stands for, catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coordinator.schedules import ScheduleSpec, Tick, due, next_after, partition_of, tick_event_id


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def when(ticks: list[Tick]) -> list[tuple[str, str | None]]:
    return [(t.at.strftime("%Y-%m-%d %H:%M"), t.partition) for t in ticks]


def every(spec: ScheduleSpec, start: datetime, end: datetime, step: timedelta) -> list[Tick]:
    """Ticks fired by a loop looking every `step` from `start` to `end` (as the ticker does)."""
    out, after, now = [], start, min(start + step, end)
    while after < end:
        got = due("s", spec, after, now)
        out += got
        after = got[-1].at if spec.catch_up == "all" and got else now
        now = min(now + step, end)
    return out


def test_a_daily_tick_stands_for_the_day_before_by_default():
    spec = ScheduleSpec(cron="0 6 * * *")
    assert when(due("s", spec, utc(2024, 1, 1), utc(2024, 1, 2, 6))) == [("2024-01-02 06:00", "2024-01-01")]
    assert due("s", spec, utc(2024, 1, 2, 6), utc(2024, 1, 2, 7)) == []  # fired up to 06:00 already
    assert partition_of(ScheduleSpec(cron="0 6 * * *", partition="0d"), utc(2024, 1, 2, 6)) == "2024-01-02"
    assert (
        partition_of(ScheduleSpec(cron="5 * * * *", partition="-1h"), utc(2024, 1, 2, 0, 5))
        == "2024-01-01T23"
    )
    assert partition_of(ScheduleSpec(cron="5 * * * *", partition="none"), utc(2024, 1, 2)) is None
    assert next_after(spec, utc(2024, 1, 2, 6)) == utc(2024, 1, 3, 6)


def test_the_local_day_is_the_zone_s():
    """06:00 in Tokyo is 21:00 UTC the day before: "yesterday" is Tokyo's yesterday."""
    spec = ScheduleSpec(cron="0 6 * * *", timezone="Asia/Tokyo")
    [tick] = due("s", spec, utc(2024, 1, 1), utc(2024, 1, 1, 21, 30))
    assert (tick.at, tick.partition) == (utc(2024, 1, 1, 21), "2024-01-01")


OUTAGE = (utc(2024, 1, 1, 6), utc(2024, 1, 4, 6, 0, 30))  # fired 01-01 06:00; back 30 s after 01-04's


def test_catch_up_all_fires_every_missed_tick_oldest_first():
    spec = ScheduleSpec(cron="0 6 * * *", catch_up="all")
    assert when(due("s", spec, *OUTAGE)) == [
        ("2024-01-02 06:00", "2024-01-01"),
        ("2024-01-03 06:00", "2024-01-02"),
        ("2024-01-04 06:00", "2024-01-03"),
    ]


def test_catch_up_latest_fires_only_the_newest_missed_tick():
    spec = ScheduleSpec(cron="0 6 * * *", catch_up="latest")
    assert when(due("s", spec, *OUTAGE)) == [("2024-01-04 06:00", "2024-01-03")]
    back_late = (OUTAGE[0], utc(2024, 1, 4, 18))  # long after the newest: still fired
    assert when(due("s", spec, *back_late)) == [("2024-01-04 06:00", "2024-01-03")]


def test_catch_up_none_fires_only_a_tick_within_its_grace():
    spec = ScheduleSpec(cron="0 6 * * *", catch_up="none", grace_s=60)
    assert when(due("s", spec, *OUTAGE)) == [("2024-01-04 06:00", "2024-01-03")]  # 30 s late: on time
    assert due("s", spec, OUTAGE[0], utc(2024, 1, 4, 6, 2)) == []  # 2 min late: missed, skipped


def test_catch_up_all_is_bounded_per_look():
    from coordinator.schedules import MAX_PER_LOOK

    spec = ScheduleSpec(cron="* * * * *", catch_up="all")
    first = due("s", spec, utc(2024, 1, 1), utc(2024, 1, 3))  # 2,880 missed minutes
    assert len(first) == MAX_PER_LOOK and first[0].at == utc(2024, 1, 1, 0, 1)
    rest = due("s", spec, first[-1].at, utc(2024, 1, 3))
    assert rest[0].at == first[-1].at + timedelta(minutes=1)


BERLIN = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin", partition="0d", catch_up="all")


@pytest.mark.parametrize("step", [timedelta(minutes=1), timedelta(minutes=17), timedelta(hours=5)])
def test_a_0230_daily_in_berlin_fires_once_a_day_across_both_dst_changes(step: timedelta):
    """Spring forward (2024-03-31: 02:00 → 03:00) skips 02:30: the tick fires at 03:30 CEST, the
    gap's length later. Fall back (2024-10-27: 03:00 → 02:00) has 02:30 twice: it fires at the
    first. Whatever the loop's cadence, one tick per local day."""
    spring = every(BERLIN, utc(2024, 3, 29), utc(2024, 4, 2), step)
    assert when(spring) == [
        ("2024-03-29 01:30", "2024-03-29"),  # 02:30 CET
        ("2024-03-30 01:30", "2024-03-30"),
        ("2024-03-31 01:30", "2024-03-31"),  # 03:30 CEST: 02:30 does not exist that night
        ("2024-04-01 00:30", "2024-04-01"),  # 02:30 CEST
    ]
    fall = every(BERLIN, utc(2024, 10, 26), utc(2024, 10, 29), step)
    assert when(fall) == [
        ("2024-10-26 00:30", "2024-10-26"),  # 02:30 CEST
        ("2024-10-27 00:30", "2024-10-27"),  # the first 02:30 (CEST), not the second (CET, 01:30 UTC)
        ("2024-10-28 01:30", "2024-10-28"),  # 02:30 CET
    ]


def test_sub_hourly_ticks_in_the_dst_hours_are_each_one_instant_once():
    spec = ScheduleSpec(cron="*/30 * * * *", timezone="Europe/Berlin", partition="none", catch_up="all")
    step = timedelta(minutes=7)
    spring = every(spec, utc(2024, 3, 30, 23), utc(2024, 3, 31, 3), step)
    # 02:00 and 02:30 CET do not exist; as instants they are 03:00 and 03:30 CEST's: each once
    assert [t.at.strftime("%H:%M") for t in spring] == [
        "23:30", "00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00"
    ]  # fmt: skip
    fall = every(spec, utc(2024, 10, 26, 23), utc(2024, 10, 27, 3), step)
    # 02:00 and 02:30 happen twice: fired at the first (CEST), so 01:00 and 01:30 UTC have none
    assert [t.at.strftime("%H:%M") for t in fall] == ["23:30", "00:00", "00:30", "02:00", "02:30", "03:00"]


def test_a_tick_is_the_same_event_whoever_computes_it():
    [a] = due("daily", BERLIN, utc(2024, 3, 30, 12), utc(2024, 3, 31, 12))
    [b] = due("daily", BERLIN, utc(2024, 3, 31), utc(2024, 3, 31, 2))
    assert a.event() == b.event() and a.event_id == tick_event_id("daily", utc(2024, 3, 31, 1, 30))
    e = a.event()
    assert (e.dataset, e.partition, e.produced_at, e.succeeded) == (
        "schedule.daily",
        "2024-03-31",
        a.at,
        True,
    )
