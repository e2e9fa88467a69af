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


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "p.yaml", env={})
    return [str(p) for p in info.value.problems]


LONG = "x" * 501


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            f"datasets:\n  {LONG}: {{partitioning: daily}}\n",
            f"p.yaml:2: datasets.{'x' * 60}... (501 characters): a dataset name is at most 500 characters",
        ),
        (
            f"jobs:\n  {LONG}: {{kind: command, settings: {{command: x}}}}\n",
            f"p.yaml:2: jobs.{'x' * 60}... (501 characters): a job name is at most 500 characters",
        ),
        (
            f"datasets: {{a: {{}}}}\njobs:\n  j:\n    kind: command\n    inputs: [a,\n      {LONG}]\n"
            "    settings: {command: x}\n",
            "p.yaml:6: jobs.j.inputs.1: a dataset name is at most 500 characters",
        ),
        (
            f"jobs:\n  j:\n    kind: command\n    outputs:\n      - {LONG}\n    settings: {{command: x}}\n",
            "p.yaml:5: jobs.j.outputs.0: a dataset name is at most 500 characters",
        ),
        (
            f"pools:\n  {'p' * 201}: 2\n",
            f"p.yaml:2: pools.{'p' * 60}... (201 characters): a pool name is at most 200 characters",
        ),
        (
            f"jobs:\n  j:\n    kind: command\n    pool: {'p' * 201}\n    settings: {{command: x}}\n",
            "p.yaml:4: jobs.j.pool: a pool name is at most 200 characters",
        ),
        (
            f"schedules:\n  {'s' * 492}: {{cron: '0 6 * * *'}}\n",
            f"p.yaml:2: schedules.{'s' * 60}... (492 characters): a schedule name is at most 491 characters "
            "(its dataset schedule.<name> is at most 500)",
        ),
        (
            'datasets:\n  "a\\0b": {}\n',
            "p.yaml:2: datasets.'a\\x00b': a NUL character is not allowed in a name",
        ),
        (
            'jobs:\n  j: {kind: command, inputs: ["a\\0"], settings: {command: x}}\n',
            "p.yaml:2: jobs.j.inputs.0: a NUL character is not allowed in a name",
        ),
        ('pools: {"q\\0": 1}\n', "p.yaml:1: pools.'q\\x00': a NUL character is not allowed in a name"),
    ],
)
def test_a_name_the_state_store_cannot_hold_is_a_problem_on_its_line(text: str, said: str) -> None:
    """Too long for the store's column (store/schema.py), or with a NUL PostgreSQL text cannot
    hold: such a name used to validate and then fail every write at run time, on every restart."""
    found = problems_of(text)
    assert len(found) == 1 and found[0].startswith(said), found


def test_names_as_long_as_the_store_takes_load() -> None:
    spec = parse_spec(
        f"datasets:\n  {'d' * 500}: {{partitioning: daily}}\npools:\n  {'p' * 200}: 2\n"
        f"schedules:\n  {'s' * 491}: {{cron: '0 6 * * *'}}\njobs:\n  {'j' * 500}:\n    kind: command\n"
        f"    inputs: [{'d' * 500}, schedule.{'s' * 491}]\n    outputs: [{'o' * 500}]\n"
        f"    pool: {'p' * 200}\n"
        "    settings: {command: x}\n",
        "p.yaml",
        env={},
    )
    assert spec.partitioning("o" * 500) == "daily"


def test_a_job_left_out_for_its_name_makes_no_unknown_inputs_downstream() -> None:
    found = problems_of(
        f"jobs:\n  {LONG}: {{kind: command, outputs: [o], settings: {{command: x}}}}\n"
        "  k: {kind: command, inputs: [o], settings: {command: x}}\n"
    )
    assert len(found) == 1 and "a job name is at most 500 characters" in found[0], found


@pytest.mark.parametrize("command", ["[]", '""', "' '", '[""]', '"\'unclosed"'])
def test_a_command_job_without_a_program_is_a_problem_on_its_line(command: str) -> None:
    """The launcher runs argv[0]: an empty command passed validation and failed every launch."""
    found = problems_of(f"jobs:\n  j:\n    kind: command\n    settings:\n      command: {command}\n")
    assert len(found) == 1 and found[0].startswith("p.yaml:5: job 'j', settings command: "), found


def test_a_spec_that_is_not_utf8_is_a_problem_on_the_line_of_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(b'datasets:\n  a: {partitioning: daily}\n  b: "\xff\xfe\xfa"\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:3: not UTF-8 text: byte 0xff (invalid start byte)"
    ]


def test_yaml_nested_too_deeply_is_a_problem_not_a_recursion_error() -> None:
    found = problems_of("x: " + "[" * 800 + "]" * 800 + "\n")
    assert found == ["p.yaml:1: nested too deeply (more than 100 levels)"], found
    deep_settings = "{a: " * 99 + "1" + "}" * 99
    found = problems_of(f"jobs:\n  j:\n    kind: command\n    settings:\n      env: {deep_settings}\n")
    assert found == ["p.yaml:5: nested too deeply (more than 100 levels)"], found
    # each anchor 90 deep, each one inside the next: shallow text, deep values
    chained = "a0: &a0 " + "[" * 90 + "1" + "]" * 90 + "\n"
    chained += "".join(f"a{i}: &a{i} " + "[" * 90 + f"*a{i - 1}" + "]" * 90 + "\n" for i in range(1, 15))
    assert problems_of(chained) == ["p.yaml:1: nested too deeply (more than 100 levels)"]


def test_coord_commands_say_a_spec_that_is_not_utf8_or_too_deep_in_one_problem(tmp_path: Path) -> None:
    import subprocess
    import sys

    coord = str(Path(sys.executable).parent / "coord")
    (tmp_path / "bytes.yaml").write_bytes(b'datasets:\n  a: {partitioning: daily}\n  b: "\xff\xfe\xfa"\n')
    (tmp_path / "deep.yaml").write_text("x: " + "[" * 800 + "]" * 800 + "\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COLUMNS": "300",
        "COORD_HOME": str(tmp_path / "h"),
    }
    for name, said in (("bytes.yaml", ":3: not UTF-8 text"), ("deep.yaml", ":1: nested too deeply")):
        spec = str(tmp_path / name)
        for args in (["validate", spec], ["run", spec], ["publish", "--spec", spec, "a", "-p", "2024-01-01"]):
            done = subprocess.run(
                [coord, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
            )
            assert done.returncode == 1, (args, done.stdout, done.stderr)
            assert f"{spec}{said}" in done.stdout + done.stderr, (args, done.stdout, done.stderr)
            assert "Traceback" not in done.stdout + done.stderr, args
