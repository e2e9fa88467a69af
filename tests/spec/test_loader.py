"""The YAML spec: the documented format loads; every problem is reported with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.errors import SpecError
from coordinator.spec import DatasetSpec, JobSpec, PipelineSpec, load_spec, parse_spec
from coordinator.spec.partitions import WindowMapping

GOOD = """\
datasets:
  raw.users:   {partitioning: daily}
  raw.events:  {partitioning: daily, columns: [{name: user_id, type: long}, {name: ts, type: timestamp}]}
  raw.clicks_hourly: {partitioning: hourly}
  mlflow.models.churn: {partitioning: none}
jobs:
  user_features:
    kind: command
    inputs:
      - raw.users
      - raw.events
      - {dataset: raw.clicks_hourly, mapping: {window: hourly}}
      - {dataset: mlflow.models.churn, mapping: latest}
    outputs: [reporting.user_features]
    partitioning: daily
    trigger: all
    retries: {max_attempts: 3, backoff_s: 1.0, max_backoff_s: 60}
    timeout_s: 3600
    pool: spark
    contract: {raw.events: [{name: user_id, type: long}]}
    settings: {command: ["make-features", "{partition}"], env: {TOKEN: "${SECRET_TOKEN}"}}
  report:
    kind: command
    inputs: [reporting.user_features]
    outputs: [reporting.report]
    settings: {command: "echo ${GREETING:-hello} {partition}"}
pools: {spark: 2, default: 8}
"""


def test_documented_format_loads(tmp_path: Path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(GOOD)
    spec = load_spec(path, env={"SECRET_TOKEN": "s3cret"})
    job = spec.jobs["user_features"]
    assert [i.dataset for i in job.inputs][:2] == ["raw.users", "raw.events"]
    assert job.inputs[2].mapping == WindowMapping(window="hourly") and job.inputs[3].mapping == "latest"
    assert job.settings["env"] == {"TOKEN": "s3cret"}
    assert spec.jobs["report"].settings["command"] == "echo hello {partition}"
    assert job.retries.max_attempts == 3 and job.retries.delay_s(1) == 1.0 and job.retries.delay_s(3) == 4.0
    # an output implied by `outputs` takes the job's partitioning, and so does a job without one
    assert spec.partitioning("reporting.user_features") == "daily"
    assert spec.job_partitioning("report") == "daily"
    assert spec.consumers["reporting.user_features"][0][0] == "report"
    assert spec.pool_size("spark") == 2 and spec.pool_size("default") == 8


def lines_of(text: str, env: dict[str, str] | None = None) -> dict[int, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "p.yaml", env=env or {})
    assert all(p.file == "p.yaml" for p in info.value.problems)
    return {p.line: p.message for p in info.value.problems}


BAD = """\
datasets:
  raw.a: {partitioning: daily}
  raw.h: {partitioning: hourly}
  out.x: {partitioning: hourly}
jobs:
  j1:
    kind: command
    inputs: [raw.a, raw.missing]
    outputs: [mid]
    settings: {command: x}
  j2:
    kind: command
    inputs: [{dataset: raw.a, mapping: {window: hourly}}]
    outputs: [mid]
    settings: {command: x}
  j3:
    kind: command
    inputs: [mid, loop]
    outputs: [loop2]
    settings: {command: x, colour: blue}
  j4:
    kind: command
    inputs: [loop2]
    outputs: [loop]
    settings: {command: x}
  j5:
    kind: teleport
    inputs: [raw.a]
    outputs: [out.x]
    pool: gpu
    settings: {command: "${NOPE}"}
"""


def test_every_problem_with_its_line():
    found = lines_of(BAD)
    assert "unknown dataset 'raw.missing'" in found[8]
    assert "window: hourly" in found[13]
    assert "produced by two jobs: 'j1' and 'j2'" in found[14]
    assert "colour" in found[20]
    assert "cycle" in " ".join(found.values())
    assert "unknown kind 'teleport'" in found[27]
    assert "input is daily, job is hourly" in found[28]  # the job takes its output's partitioning
    assert "unknown pool 'gpu'" in found[30]
    assert "environment variable NOPE is not set" in found[31]


def test_field_errors_and_typos_have_lines():
    found = lines_of(
        "datasets:\n  a: {partitioning: weekly}\njobs:\n  j:\n    kind: command\n"
        "    tigger: all\n    settings: {command: x}\n    retries: {max_attempts: 0}\n"
    )
    assert "datasets.a.partitioning" in found[2]
    assert "tigger" in found[6] and "Extra inputs" in found[6]
    assert "max_attempts" in found[8]


def test_yaml_syntax_and_duplicates():
    assert "not valid YAML" in lines_of("jobs: [\n  a\n")[3]
    assert "duplicate key 'a'" in lines_of("datasets:\n  a: {}\n  a: {}\n")[3]


def test_missing_file(tmp_path: Path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "nope.yaml")


def test_output_partitioning_must_match_the_job():
    found = lines_of(
        "datasets:\n  a: {partitioning: daily}\n  o: {partitioning: hourly}\njobs:\n  j:\n"
        "    kind: command\n    partitioning: daily\n    inputs: [a]\n    outputs: [o]\n"
        "    settings: {command: x}\n"
    )
    assert "is daily but its output 'o' is hourly" in found[9]


def test_python_api_is_the_same_model():
    spec = PipelineSpec(
        datasets={"raw.a": DatasetSpec(partitioning="daily")},
        jobs={"j": JobSpec(kind="command", inputs=["raw.a"], outputs=["b"], settings={"command": ["true"]})},
    ).checked()
    assert spec.job_partitioning("j") == "daily"
    with pytest.raises(SpecError, match="unknown dataset 'raw.zz'"):
        PipelineSpec(
            jobs={"j": JobSpec(kind="command", inputs=["raw.zz"], settings={"command": "x"})}
        ).checked()


def test_rerun_latest_needs_a_latest_input_of_a_daily_or_hourly_job():
    found = lines_of(
        "datasets:\n  a: {partitioning: daily}\n  m: {partitioning: none}\njobs:\n"
        "  ok: {kind: command, inputs: [a, {dataset: m, mapping: latest, on_change: rerun_latest}],"
        " outputs: [o1], settings: {command: x}}\n"
        "  same: {kind: command, inputs: [{dataset: a, on_change: rerun_latest}], outputs: [o2],"
        " settings: {command: x}}\n"
        "  flat: {kind: command, inputs: [{dataset: m, mapping: latest, on_change: rerun_latest}],"
        " outputs: [o3], settings: {command: x}}\n"
    )
    assert 5 not in found
    assert "on_change rerun_latest needs mapping latest" in found[6] and "'same'" in found[6]
    assert "on a daily or hourly job" in found[7] and "on none" in found[7]
    typo = lines_of(
        "datasets: {m: {partitioning: none}}\njobs:\n"
        "  j: {kind: command, inputs: [{dataset: m, mapping: latest, on_change: rerun}],"
        " settings: {command: x}}\n"
    )
    assert "on_change" in typo[3]


def test_relative_paths_in_kind_settings_mean_the_spec_s_folder(tmp_path: Path, monkeypatch) -> None:
    """As the kinds' settings say: wherever the coordinator was started, at load and at launch."""
    from coordinator.kinds.spark import SparkSettings

    (tmp_path / "specs" / "apps").mkdir(parents=True)
    (tmp_path / "specs" / "apps" / "mine.py").write_text("print('hello')\n")
    path = tmp_path / "specs" / "pipeline.yaml"
    path.write_text(
        "datasets: {a: {partitioning: daily}}\njobs:\n"
        "  s: {kind: spark, inputs: [a], outputs: [b], settings: {application: apps/mine.py,"
        " output: 'out/{partition}'}}\n"
        "  c: {kind: command, inputs: [a], outputs: [x], settings: {command: 'true'}}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load_spec(path)  # the application is found beside the spec, not in the working folder
    launched = SparkSettings.model_validate(spec.jobs["s"].settings)  # what a launcher validates
    beside = (tmp_path / "specs").resolve()
    assert launched.output_location("b", "s", "2024-01-01") == str(beside / "out" / "2024-01-01")
    assert spec.jobs["c"].settings == {"command": "true"}  # a kind without paths gets nothing
    with pytest.raises(SpecError, match="application 'apps/mine.py' not found"):
        parse_spec(path.read_text(), str(path), env={})  # text alone: the working folder
