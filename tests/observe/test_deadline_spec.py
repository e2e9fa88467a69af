"""The per-job `deadline` in the spec: "HH:MM" after the partition ends, only on daily/hourly jobs."""

from __future__ import annotations

import pytest

from coordinator.errors import SpecError
from coordinator.spec import parse_spec

SPEC = """\
datasets:
  raw.a: {partitioning: PARTITIONING}
jobs:
  j:
    kind: command
    inputs: [raw.a]
    deadline: "DEADLINE"
    settings: {command: "true"}
"""


def spec(partitioning: str, deadline: str):
    return parse_spec(SPEC.replace("PARTITIONING", partitioning).replace("DEADLINE", deadline))


def test_deadline_is_read_and_checked():
    assert spec("daily", "06:00").jobs["j"].deadline == "06:00"
    assert spec("hourly", "0:20").jobs["j"].deadline == "0:20"
    with pytest.raises(SpecError) as err:
        spec("none", "06:00")
    assert "a deadline needs a daily or hourly job" in str(err.value.problems[0].message)
    assert err.value.problems[0].line == 7
    with pytest.raises(SpecError):
        spec("daily", "6am")
