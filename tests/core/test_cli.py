"""The core commands: validate, run, runs, status, retry, rerun, backfill (embedded bus + SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from coordinator.bus.local import LocalBus
from coordinator.cli import build_app
from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.settings import Settings

SPEC = """\
datasets:
  raw.a: {partitioning: daily}
jobs:
  load:
    kind: command
    inputs: [raw.a]
    outputs: [mid]
    settings: {command: [sh, -c, 'test -e {flag} || { echo "ERROR: flag missing" >&2; exit 1; }']}
  after: {kind: command, inputs: [mid], outputs: [out], settings: {command: "true"}}
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("COORD_HOME", str(home))
    monkeypatch.setenv("COORD_BUS", "local")
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("COORD_STATE_URL", raising=False)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(SPEC.replace("{flag}", str(tmp_path / "flag")))
    monkeypatch.setenv("COORD_SPEC", str(spec))
    return tmp_path, spec


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), catch_exceptions=False, terminal_width=200)


def test_validate(env, tmp_path: Path):
    _, spec = env
    ok = invoke("validate", str(spec))
    assert ok.exit_code == 0 and "2 jobs" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs:\n  j:\n    kind: command\n    inputs: [nope]\n    settings: {command: x}\n")
    out = invoke("validate", str(bad))
    assert (
        out.exit_code == 1 and f"{bad}:4" in out.output.replace("\n", "") and "unknown dataset" in out.output
    )


def test_run_fail_retry_rerun_backfill(env):
    tmp_path, spec = env
    settings = Settings()
    with Publisher(LocalBus(settings.home / "bus.db"), settings) as p:
        p.publish_many([CompletionEvent(dataset="raw.a", partition=d) for d in ("2024-01-01", "2024-01-02")])
        p.flush()
    out = invoke("run", str(spec), "--until-idle", "--timeout", "60")
    assert out.exit_code == 0 and "failed 2" in out.output, out.output
    failed = invoke("runs", "--state", "failed")
    assert failed.output.count("load") == 2 and "flag missing" in failed.output
    status = invoke("status", "--last", "3")
    assert "✗" in status.output and "mid" in status.output
    (tmp_path / "flag").touch()
    from coordinator.store import StateStore

    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        run_id = tx.list_runs(job="load", partition="2024-01-01")[0].run_id
    assert "ready again" in invoke("retry", run_id[:10]).output
    assert invoke("retry", "zzzz").exit_code == 1
    out = invoke("run", str(spec), "--until-idle", "--timeout", "60")
    assert "succeeded 2" in out.output, out.output  # load[01] then after[01]
    assert "queued run" in invoke("rerun", "load", "--partition", "2024-01-02").output
    out = invoke("backfill", "load", "--from", "2024-01-01", "--to", "2024-01-03")
    assert out.exit_code == 0, out.output
    assert "skipped load[2024-01-03]: waiting for raw.a[2024-01-03]" in out.output
    assert "queued 2 run(s)" in out.output and "2 succeeded, 0 did not" in out.output
    # backfill executes its own runs; the service takes the downstream work they made ready
    assert invoke("run", str(spec), "--until-idle", "--timeout", "60").exit_code == 0
    runs = invoke("runs", "--job", "after", "--state", "succeeded").output
    assert "2024-01-01" in runs and "2024-01-02" in runs


def test_a_coordinator_error_is_one_line_and_exit_1(env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No traceback from any command: the app turns a CoordinatorError into one line."""
    monkeypatch.setenv("COORD_HOME", str(tmp_path / "never-made"))
    for args in (["runs"], ["status"], ["show", "abc"], ["lineage", "raw.a"]):
        out = invoke(*args)
        assert out.exit_code == 1, (args, out.output)
        assert out.output.strip().splitlines()[-1].startswith("error: no coordinator home at "), out.output
        assert "Traceback" not in out.output
    monkeypatch.setenv("COORD_HOME", str(tmp_path))
    monkeypatch.setenv("COORD_STATE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    out = invoke("runs")
    assert out.exit_code == 1 and out.output.startswith("error: "), out.output
    assert len(out.output.splitlines()) == 1, out.output


def _commands(command, path=("coord",)):
    """Every command of the app's tree, with its path (`model watch`, `token create`...)."""
    for name, sub in getattr(command, "commands", {}).items():
        if hasattr(sub, "commands"):
            yield from _commands(sub, (*path, name))
        else:
            yield (*path, name), sub


def test_every_option_and_argument_has_help_and_every_command_takes_home():
    import typer

    from coordinator.cli import build_app

    commands = list(_commands(typer.main.get_command(build_app())))
    assert len(commands) > 15
    undocumented = [
        (" ".join(path), param.name)
        for path, command in commands
        for param in command.params
        if param.name != "help" and not getattr(param, "help", None)
    ]
    assert undocumented == []
    assert [" ".join(p) for p, c in commands if not any("--home" in x.opts for x in c.params)] == []


def test_the_spec_is_named_by_spec_everywhere_the_argument_still_works(env, tmp_path: Path):
    _, spec = env
    for args in (["validate", "--spec", str(spec)], ["validate", "-s", str(spec)], ["validate", str(spec)]):
        out = invoke(*args)
        assert out.exit_code == 0 and "2 jobs" in out.output, (args, out.output)
    other = tmp_path / "other.yaml"
    other.write_text("datasets: {}\njobs: {}\n")
    # COORD_SPEC (the option's default) gives way to the deprecated argument...
    assert "0 datasets, 0 jobs" in invoke("validate", str(other)).output
    # ... but the spec given twice, differently, on the command line is refused, not guessed
    twice = invoke("validate", "--spec", str(spec), str(other))
    assert twice.exit_code == 2 and "given twice" in twice.output, twice.output
    out = invoke("run", "--spec", str(spec), "--until-idle", "--timeout", "30")
    assert out.exit_code == 0 and "runs created 0" in out.output, out.output


def test_home_before_or_after_the_command_sets_coord_home(env, tmp_path: Path):
    """`--home` names the folder of the embedded store and bus for one invocation, given to the
    app (`coord --home H runs`) or to the command (`coord runs --home H`); a first `run` makes it."""
    _, spec = env
    elsewhere = tmp_path / "elsewhere"
    settings = Settings(home=elsewhere)
    out = invoke("run", "--home", str(elsewhere), "--spec", str(spec), "--until-idle", "--timeout", "30")
    assert out.exit_code == 0 and (elsewhere / "state.db").is_file(), out.output
    with Publisher(LocalBus(elsewhere / "bus.db"), settings) as p:
        p.publish(CompletionEvent(dataset="raw.a", partition="2024-01-01"))
        p.flush()
    ran = invoke("--home", str(elsewhere), "run", "-s", str(spec), "--until-idle", "--timeout", "60")
    assert ran.exit_code == 0, ran.output
    for args in (["--home", str(elsewhere), "runs", "--json"], ["runs", "--json", "--home", str(elsewhere)]):
        shown = invoke(*args)
        assert shown.exit_code == 0 and '"job": "load"' in shown.output, (args, shown.output)
    # the fixture's own home (COORD_HOME) saw none of it
    assert '"runs": []' in invoke("runs", "--json").output


def test_the_demo_ends_with_the_command_that_serves_its_ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The printed command is complete: run as `validate` instead of `serve`, its environment
    and options load the demo's spec, with the lake and the export under the demo's home."""
    import shlex

    from coordinator.cli.demo import serve_command
    from coordinator.demo.settings import DemoOptions

    monkeypatch.delenv("COORD_PRODUCT_DB_URL", raising=False)
    options = DemoOptions(home=tmp_path / "demo home")
    words = shlex.split(serve_command(options))
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    command = [w for w in words if w not in {f"{k}={v}" for k, v in env.items()}]
    assert command[:2] == ["coord", "serve"] and "--home" in command and "--spec" in command
    assert env["COORD_ANONYMOUS_READS"] == "true"
    assert env["LAKE"] == str(options.lake) and env["APP_EXPORT"] == str(options.app_export)
    assert env["COORD_PRODUCT_DB_URL"] == f"sqlite:///{(tmp_path / 'demo home' / 'product.db').resolve()}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = invoke("validate", *command[2:])
    assert out.exit_code == 0 and "jobs" in out.output, out.output
