"""A stream job's spec problems are found when the spec loads, with their lines."""

from __future__ import annotations

import pytest

from coordinator.errors import SpecError
from coordinator.spec import parse_spec


def test_a_stream_job_has_exactly_one_output_and_its_settings_are_checked():
    with pytest.raises(SpecError) as found:
        parse_spec("""
datasets:
  stream.clicks: {partitioning: hourly}
jobs:
  two:
    kind: stream
    outputs: [stream.clicks, other]
    settings: {topic: t}
  none:
    kind: stream
    settings: {topic: t, lateness_s: -1}
""")
    problems = sorted((p.line, p.message) for p in found.value.problems)
    assert problems[0] == (
        7,
        "job 'two': a stream job has one output, its windows' dataset; 'other' is another",
    )
    assert [line for line, _ in problems[1:]] == [11] and "lateness_s" in problems[1][1]
