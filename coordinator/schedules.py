"""Schedules: cron expressions whose ticks are completion events — pure, no clock, no I/O.

    schedules:
      daily_0600: {cron: "0 6 * * *", timezone: Europe/Berlin, partition: -1d, catch_up: latest}

Each schedule is a dataset of its own, `schedule.<name>` (declared by the schedule; a spec may
declare it under `datasets:` too, with the same partitioning), so time is an input like any
other: a job that takes `schedule.daily_0600` and `scores.churn` runs at 06:00 for yesterday
once the scores are complete. A tick is one succeeded event whose id is derived from (schedule,
scheduled instant): recorded by the store's unique event id, it exists once however many
instances or restarts compute it (coordinator/ticker.py fires them).

When ticks fall:
- The cron expression (croniter: five fields, or six with seconds, and `@daily`-style macros)
  is read in the schedule's `timezone` (IANA, zoneinfo), on the local wall clock.
- A wall time the clock skips (02:30 on the spring-forward night) fires at the instant the
  offset before the change gives it — 03:30 of the new time, the gap's length later; a wall
  time that happens twice (02:30 on the fall-back night) fires once, at its first occurrence.
  Times that name one instant (02:00 skipped and 03:00) are one tick.

Which partition a tick stands for (`partition`): `-1d` (the default) the local day before the
tick, `0d` its own day, `-1h`/`0h` the UTC hour before or of it, `none` unpartitioned.

What happens to ticks whose time passed while no coordinator ran (`catch_up`):
- `all` — every missed tick fires, oldest first (a backfill of each missed day);
- `latest` (the default) — only the newest missed tick fires: one run for the latest day, not
  a burst of stale ones;
- `none` — missed ticks are skipped; a tick fires only within `grace_s` of its time.
A schedule that never fired begins at its first look (or at `start`, when given).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from coordinator.events import CompletionEvent, Status, derived_event_id
from coordinator.timezones import ZoneName

PREFIX = "schedule."
PRODUCER = "coordinator.schedule"
TICK_ID_PREFIX = "schedule:"
# how far a wall time can be from its instant's naive local time: the widest DST shift is 2 h
_MARGIN = timedelta(hours=3)
_NONE, _SECOND = timedelta(0), timedelta(seconds=1)
MAX_PER_LOOK = 500  # `catch_up: all` after a long outage fires this many per look, the rest next
_OFFSET = re.compile(r"^([+-]?\d{1,4})([dh])$")


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str = Field(min_length=1)
    timezone: ZoneName = "UTC"
    partition: str = "-1d"
    catch_up: Literal["all", "latest", "none"] = "latest"
    grace_s: float = Field(default=60.0, ge=0)
    start: datetime | date | None = None  # wall time in `timezone` (a date: its midnight)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 6 * * *': 06:00 every day)")
        return value

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: str) -> str:
        if value != "none" and not _OFFSET.match(str(value)):
            raise ValueError(f"{value!r} is no partition offset: -1d, 0d, -1h, 0h (days or hours) or none")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def partitioning(self) -> Literal["daily", "hourly", "none"]:
        """The partitioning of the schedule's dataset."""
        if self.partition == "none":
            return "none"
        return "daily" if self.partition.endswith("d") else "hourly"

    def begins(self) -> datetime | None:
        """`start` as a UTC instant (None when not given)."""
        if self.start is None:
            return None
        start = self.start
        if not isinstance(start, datetime):
            start = datetime.combine(start, datetime.min.time())
        return start.astimezone(UTC) if start.tzinfo else _instant(start, self.zone)


@dataclass(frozen=True, slots=True)
class Tick:
    schedule: str
    at: datetime  # the scheduled instant, UTC
    partition: str | None

    @property
    def dataset(self) -> str:
        return PREFIX + self.schedule

    @property
    def event_id(self) -> str:
        return tick_event_id(self.schedule, self.at)

    def event(self) -> CompletionEvent:
        """The tick as a completion event; the same event whoever makes it, whenever."""
        return CompletionEvent(
            event_id=self.event_id,
            dataset=self.dataset,
            partition=self.partition,
            status=Status.SUCCEEDED,
            producer=PRODUCER,
            produced_at=self.at,
            attributes={"scheduled_at": _iso(self.at)},
        )


def tick_event_id(schedule: str, at: datetime) -> str:
    """Derived from (schedule, scheduled instant): the store's unique event id makes it once.
    Every one starts with TICK_ID_PREFIX (a long one is hashed after it)."""
    return derived_event_id("schedule", schedule, _iso(at))


def dataset_of(name: str) -> str:
    return PREFIX + name


def schedule_of(dataset: str) -> str | None:
    """The schedule a dataset name points at (`schedule.daily_0600` → `daily_0600`), else None."""
    return dataset[len(PREFIX) :] if dataset.startswith(PREFIX) else None


def implied_datasets(schedules: object) -> dict[str, dict[str, str]]:
    """The dataset each schedule declares, from a spec's raw `schedules:` (tolerant of bad
    values, which the schedule's own validation reports)."""
    if not isinstance(schedules, dict):
        return {}
    out: dict[str, dict[str, str]] = {}
    for name, value in schedules.items():
        if not isinstance(name, str):
            continue
        if isinstance(value, ScheduleSpec):
            out[dataset_of(name)] = {"partitioning": value.partitioning}
        elif isinstance(value, dict):
            offset = value.get("partition", "-1d")
            part = "none" if offset == "none" else "hourly" if str(offset).endswith("h") else "daily"
            out[dataset_of(name)] = {"partitioning": part}
    return out


def partition_of(spec: ScheduleSpec, at: datetime) -> str | None:
    """The partition a tick at instant `at` stands for."""
    if spec.partition == "none":
        return None
    m = _OFFSET.match(spec.partition)
    assert m is not None  # validated
    n, unit = int(m.group(1)), m.group(2)
    if unit == "d":
        return (at.astimezone(spec.zone).date() + timedelta(days=n)).isoformat()
    return (at.astimezone(UTC) + timedelta(hours=n)).strftime("%Y-%m-%dT%H")


def due(name: str, spec: ScheduleSpec, after: datetime, now: datetime) -> list[Tick]:
    """The ticks to fire at `now`, oldest first, when every scheduled instant up to `after`
    (exclusive of later ones) was already fired or passed over — by the catch-up policy."""
    if now <= after:
        return []
    if spec.catch_up == "all":
        times = list(_forward(spec, after, now, MAX_PER_LOOK))
    else:
        newest = _newest(spec, after, now)
        on_time = newest is not None and (spec.catch_up == "latest" or now - newest <= _grace(spec))
        times = [newest] if on_time and newest is not None else []
    return [Tick(name, t, partition_of(spec, t)) for t in times]


def next_after(spec: ScheduleSpec, after: datetime) -> datetime:
    """The first scheduled instant after `after` (when the next look is worth making)."""
    for t in _forward(spec, after, after + timedelta(days=3660), 1):
        return t
    return after + timedelta(days=3660)


def _grace(spec: ScheduleSpec) -> timedelta:
    return timedelta(seconds=spec.grace_s)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall time in `zone` as a UTC instant: a skipped time takes the offset before the
    change (fold=0, it lands the gap's length later), a repeated one its first occurrence."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _margin(zone: ZoneInfo, t: datetime) -> timedelta:
    """How far from instant `t` the walk must reach to see every wall time that maps near it: the
    widest DST shift when the offset changes within it, nothing elsewhere (so a cron with seconds
    walks only what it needs)."""
    return (
        _MARGIN
        if (t - _MARGIN).astimezone(zone).utcoffset() != (t + _MARGIN).astimezone(zone).utcoffset()
        else _NONE
    )


def _walls(spec: ScheduleSpec, start: datetime, backward: bool = False) -> Iterator[datetime]:
    """Naive local wall times of the cron expression, from the wall time of instant `start`
    (forward: after it; backward: at or before it), widened by the margin there."""
    zone = spec.zone
    margin = _margin(zone, start)
    origin = _wall(start, zone) + (margin + _SECOND if backward else -margin)
    it = croniter(spec.cron, origin)
    step = it.get_prev if backward else it.get_next
    while True:
        yield step(datetime)


def _forward(spec: ScheduleSpec, after: datetime, now: datetime, limit: int) -> Iterator[datetime]:
    """Scheduled instants in (after, now], oldest first, at most `limit` of them."""
    zone, found = spec.zone, set()
    end = _wall(now, zone) + _margin(zone, now)
    for wall in _walls(spec, after):
        if wall > end:
            break
        if len(found) >= limit:
            last = max(found)
            if wall > _wall(last, zone) + _margin(zone, last):
                break
        t = _instant(wall, zone)
        if after < t <= now:
            found.add(t)
    yield from sorted(found)[:limit]


def _newest(spec: ScheduleSpec, after: datetime, now: datetime) -> datetime | None:
    """The newest scheduled instant in (after, now], walking back from `now`."""
    zone, best = spec.zone, None
    floor = _wall(after, zone) - _margin(zone, after)
    for wall in _walls(spec, now, backward=True):
        if wall < floor or (best is not None and wall < _wall(best, zone) - _margin(zone, best)):
            break
        t = _instant(wall, zone)
        if after < t <= now and (best is None or t > best):
            best = t
    return best


def _wall(t: datetime, zone: ZoneInfo) -> datetime:
    return t.astimezone(zone).replace(tzinfo=None)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
