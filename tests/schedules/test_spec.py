"""The `schedules:` section and `rerun_on` in a spec: what is accepted, and every mistake in one
pass with its file and line."""

from __future__ import annotations

import pytest

from coordinator.admission import admission_problem
from coordinator.errors import SpecError
from coordinator.spec import parse_spec

GOOD = """\
schedules:
  daily_0600: {cron: "0 6 * * *", timezone: Europe/Berlin, catch_up: all, start: 2024-03-01}
  hourly: {cron: "5 * * * *", partition: -1h}
  weekly: {cron: "@weekly", partition: none, catch_up: none, grace_s: 600}
datasets:
  scores: {partitioning: daily}
  schedule.hourly: {partitioning: hourly}
jobs:
  push: {kind: command, inputs: [schedule.daily_0600, scores], outputs: [pushed], settings: {command: x}}
  hourly_job: {kind: command, inputs: [schedule.hourly], outputs: [h], settings: {command: x}}
  weekly_job: {kind: command, inputs: [schedule.weekly], outputs: [w], settings: {command: x}}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        parse_spec(text, "pipeline.yaml")
    return str(err.value).splitlines()


def test_a_schedule_declares_its_dataset_and_jobs_take_it_like_any_input():
    spec = parse_spec(GOOD)
    assert spec.partitioning("schedule.daily_0600") == "daily"
    assert spec.partitioning("schedule.hourly") == "hourly" and spec.partitioning("schedule.weekly") == "none"
    assert spec.job_partitioning("push") == "daily"
    assert [job for job, _ in spec.consumers["schedule.daily_0600"]] == ["push"]
    daily = spec.schedules["daily_0600"]
    assert (daily.timezone, daily.partition, daily.catch_up, str(daily.start)) == (
        "Europe/Berlin", "-1d", "all", "2024-03-01",
    )  # fmt: skip
    # ticks pass admission like events of any declared dataset (they come back off the bus)
    assert admission_problem(spec, "schedule.daily_0600", "2024-03-01") is None
    assert admission_problem(spec, "schedule.daily_0600", None) is not None  # a daily tick has a day


def test_every_schedule_mistake_is_named_with_its_line_in_one_pass():
    text = """\
schedules:
  bad_cron: {cron: "0 25 * * *"}
  bad_zone: {cron: "0 6 * * *", timezone: Europe/Nowhere}
  bad_offset: {cron: "0 6 * * *", partition: yesterday, catch_up: sometimes}
  typo: {cron: "0 6 * * *", timezon: UTC}
  ok: {cron: "0 6 * * *"}
datasets:
  schedule.ok: {partitioning: hourly}
  schedule.ghost: {partitioning: daily}
jobs:
  a: {kind: command, inputs: [schedule.bad_cron, schedule.nope], outputs: [o], settings: {command: x}}
  b: {kind: command, inputs: [schedule.bad_zone], outputs: [schedule.typo], settings: {command: x}}
  c: {kind: command, inputs: [schedule.ok], outputs: [o3], settings: {command: x}, trigger: any,
      rerun_on: all_new}
  d: {kind: command, inputs: [schedule.ok], outputs: [o4], settings: {command: x}, rerun_on: sometimes}
"""
    found = problems(text)
    expected = [
        "pipeline.yaml:2: schedules.bad_cron.cron: '0 25 * * *' is not a cron expression",
        "pipeline.yaml:3: schedules.bad_zone.timezone: 'Europe/Nowhere' is not an IANA time zone",
        "pipeline.yaml:4: schedules.bad_offset.partition: 'yesterday' is no partition offset",
        "pipeline.yaml:4: schedules.bad_offset.catch_up: ",
        "pipeline.yaml:5: schedules.typo.timezon: ",
        "pipeline.yaml:8: dataset 'schedule.ok' is hourly; its schedule ticks daily",
        "pipeline.yaml:9: dataset 'schedule.ghost': unknown schedule 'ghost' (declare it in schedules)",
        "pipeline.yaml:11: job 'a': unknown schedule 'nope' (declare it in schedules)",
        "pipeline.yaml:12: job 'b': 'schedule.typo' is a schedule's ticks, which only the coordinator makes",
        "pipeline.yaml:14: job 'c': trigger any and rerun_on all_new contradict each other",
        "pipeline.yaml:15: jobs.d.rerun_on: ",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in found), f"{want!r} not in {found}"
    # a schedule that did not validate is not also "unknown" where a job takes it
    assert not any(
        "unknown schedule 'bad_cron'" in line or "unknown schedule 'bad_zone'" in line for line in found
    )
    assert len(found) == len(expected), found
