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


def test_a_stream_jobs_output_is_a_template_with_its_partition(tmp_path):
    """Like batch jobs' outputs: {partition} required (each window a folder of its own), {dataset}
    and {job} filled, relative to the spec's folder; output_dir stays as its older form."""
    with pytest.raises(SpecError) as found:
        parse_spec("""
datasets:
  stream.clicks: {partitioning: hourly}
jobs:
  flat:
    kind: stream
    outputs: [stream.clicks]
    settings: {topic: t, output: lake/clicks}
  both:
    kind: stream
    outputs: [stream.clicks]
    settings: {topic: t, output: "lake/{partition}", output_dir: lake}
  remote:
    kind: stream
    outputs: [stream.clicks]
    settings: {topic: t, output: "s3://bucket/{partition}"}
""")
    problems = sorted((p.line, p.message) for p in found.value.problems if "settings" in p.message)
    assert [line for line, _ in problems] == [8, 12, 16]
    assert "needs {partition}: each window is a partition of its own" in problems[0][1]
    assert "give output only" in problems[1][1] and "a path without a scheme" in problems[2][1]

    from coordinator.kinds.stream import StreamSettings

    def template(**settings: str) -> str:
        model = StreamSettings.model_validate({"topic": "t", "base_dir": str(tmp_path), **settings})
        return model.window_template("stream.clicks", "clicks_hourly", tmp_path / "run")

    assert template(output="lake/{job}/{dataset}/date={partition}") == (
        f"{tmp_path}/lake/clicks_hourly/stream.clicks/date={{partition}}"
    )
    assert template(output_dir="out") == f"{tmp_path}/out/stream.clicks/{{partition}}"
    assert template() == f"{tmp_path}/run/windows/stream.clicks/{{partition}}"
