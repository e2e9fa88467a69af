"""The spark settings model, the spark-submit command line and the job SDK's arguments (no JVM)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from coordinator.errors import LaunchError
from coordinator.launchers.registry import launcher_class
from coordinator.launchers.spark import SparkLauncher, SparkSettings
from coordinator.settings import Settings
from coordinator.sparkjob import JobArgumentError, argument_parser, parse_args
from tests.spark.conftest import run_context

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def test_registry_serves_the_spark_kind() -> None:
    assert launcher_class("spark") is SparkLauncher
    assert SparkLauncher.settings_model is SparkSettings


@pytest.mark.parametrize("application", ["user_features", "jobs.user_features"])
def test_module_application_resolves_to_its_file(application: str) -> None:
    settings = SparkSettings.model_validate({"application": application})
    launcher = SparkLauncher(Settings())
    argv = launcher.command(run_context(Path("w"), "j", "2026-03-10", {}, [], ()), settings)
    assert str(JOBS / "user_features.py") in argv


def test_relative_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "mine.py").write_text("print('hi')\n")
    js = SparkSettings.model_validate({"application": "apps/mine.py", "output": "out/{dataset}/{partition}"},
                                      context={"spec_dir": tmp_path})
    assert js.base_dir == str(tmp_path.resolve())
    expected = str(tmp_path / "out/reporting.x/2026-03-10")
    assert js.output_location("reporting.x", "job", "2026-03-10") == expected
    assert js.output_location("reporting.x", "job", None) == str(tmp_path / "out/reporting.x")
    per_output = SparkSettings.model_validate(
        {"application": "user_features", "output": {"a": "s3a://bucket/a/date={partition}"}})
    assert per_output.output_location("a", "j", "2026-03-10") == "s3a://bucket/a/date=2026-03-10"
    assert per_output.output_location("b", "j", "2026-03-10") is None


@pytest.mark.parametrize(("settings", "problem"), [
    ({"application": "user_features", "driver_memory": "lots"}, "driver_memory"),
    ({"application": "user_features", "confs": {}}, "confs"),
    ({"application": "no_such_job_anywhere"}, "neither a file nor a module"),
    ({"application": "missing/app.py"}, "not found"),
    ({"application": "user_features", "deploy_mode": "cluster", "master": "local[2]"}, "cluster master"),
    ({"application": "user_features", "deploy_mode": "sideways"}, "deploy_mode"),
    ({"application": "user_features", "deploy_mode": "cluster", "master": "spark://m:7"}, "JVM applications"),
])
def test_bad_settings_are_rejected_when_the_spec_loads(settings: dict, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        SparkSettings.model_validate(settings)


def test_command_line(tmp_path: Path) -> None:
    settings = Settings(spark_master="local[2]", spark_submit="/opt/spark/bin/spark-submit",
                        spark_conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"})
    ctx = run_context(tmp_path / "run", "features", "2026-03-10",
                      {"application": "user_features",
                       "conf": {"spark.sql.shuffle.partitions": 8, "spark.sql.adaptive.enabled": False},
                       "driver_memory": "1g", "packages": ["org.example:lib:1.0"], "py_files": ["deps.zip"],
                       "args": ["--lookback-days", 7, "--tag", "{job}@{partition}"],
                       "output": str(tmp_path / "out" / "date={partition}"), "base_dir": str(tmp_path)},
                      [("raw.users", "2026-03-10", "/lake/users/date=2026-03-10"),
                       ("raw.events", "2026-03-10", None)],                        # no location: not passed
                      ("reporting.user_features",))
    launcher = SparkLauncher(settings)
    argv = launcher.command(ctx, launcher.job_settings(ctx))
    assert argv[:7] == ["/opt/spark/bin/spark-submit", "--master", "local[2]", "--deploy-mode", "client",
                        "--name", "coord:features:2026-03-10"]
    confs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    assert "spark.ui.enabled=false" in confs and "spark.sql.shuffle.partitions=8" in confs   # the job's wins
    assert "spark.sql.shuffle.partitions=4" not in confs and "spark.sql.adaptive.enabled=false" in confs
    assert f"spark.coord.resultFile={tmp_path / 'run' / 'result.jsonl'}" in confs
    assert argv[argv.index("--driver-memory") + 1] == "1g"
    assert argv[argv.index("--packages") + 1] == "org.example:lib:1.0"
    assert argv[argv.index("--py-files") + 1] == str(tmp_path / "deps.zip")
    app = argv.index(str(JOBS / "user_features.py"))
    assert argv[app + 1:] == ["--partition", "2026-03-10", "--input", "raw.users=/lake/users/date=2026-03-10",
                              "--output", f"reporting.user_features={tmp_path}/out/date=2026-03-10",
                              "--lookback-days", "7", "--tag", "features@2026-03-10"]
    env = launcher.environment(ctx)
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert env["COORD_JOB"] == "features" and "SPARK_HOME" not in env      # a configured Spark keeps its own


def test_standalone_cluster_mode_turns_on_the_rest_gateway(tmp_path: Path) -> None:
    launcher = SparkLauncher(Settings(spark_master="spark://master:7077", spark_submit="spark-submit"))
    ctx = run_context(tmp_path, "j", None, {"application": "hdfs:///apps/etl.jar", "main_class": "org.x.Etl",
                                            "deploy_mode": "cluster"}, [], ())
    argv = launcher.command(ctx, launcher.job_settings(ctx))
    assert "spark.master.rest.enabled=true" in argv and argv[argv.index("--deploy-mode") + 1] == "cluster"
    assert argv[argv.index("--class") + 1] == "org.x.Etl"
    with pytest.raises(LaunchError, match="cluster master"):
        local = SparkLauncher(Settings(spark_master="local[*]", spark_submit="spark-submit"))
        local.command(ctx, local.job_settings(ctx))
    python_app = run_context(tmp_path, "j", None, {"application": "user_features", "deploy_mode": "cluster"},
                             [], ())
    with pytest.raises(LaunchError, match="only JVM applications"):
        launcher.command(python_app, launcher.job_settings(python_app))


def test_job_arguments() -> None:
    parser = argument_parser("t")
    parser.add_argument("--lookback-days", type=int, default=90)
    args = parse_args(parser, ["--partition", "2026-03-10", "--input", "fivetran.app.users=/l/u",
                               "--input", "raw.hourly=/l/h/00", "--input", "raw.hourly=/l/h/01",
                               "--output", "reporting.f=/w/f", "--lookback-days", "7"])
    assert args.partition == "2026-03-10" and args.options.lookback_days == 7
    assert args.input("users") == args.input("fivetran.app.users") == "/l/u"
    assert args.input_locations("hourly") == ["/l/h/00", "/l/h/01"]
    assert args.output() == ("reporting.f", "/w/f")
    with pytest.raises(JobArgumentError, match="has 2 locations"):
        args.input("hourly")
    with pytest.raises(JobArgumentError, match="no input named 'events'"):
        args.input("events")
    ambiguous = parse_args(argv=["--input", "a.users=/x", "--input", "b.users=/y"])
    with pytest.raises(JobArgumentError, match="ambiguous"):
        ambiguous.input("users")
    with pytest.raises(SystemExit):
        parse_args(argv=["--input", "no-equals-sign"])


def test_spec_reports_a_bad_spark_setting_with_its_line() -> None:
    from coordinator.errors import SpecError
    from coordinator.spec import parse_spec

    text = """datasets: {raw.a: {partitioning: daily}}
jobs:
  f:
    kind: spark
    inputs: [raw.a]
    outputs: [out]
    settings:
      application: user_features
      driver_memory: lots
      conf: {spark.sql.shuffle.partitions: 8}
"""
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "pipeline.yaml")
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == ("pipeline.yaml", 9) and "driver_memory" in problem.message
    assert parse_spec(text.replace("lots", "1g"), "pipeline.yaml").jobs["f"].kind == "spark"
