"""Settings mistakes are one line naming the variable, its value and what is allowed — through
the real `coord` command, in a subprocess, with the variables in its environment or a .env file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.errors import SettingsError
from coordinator.settings import Settings

COORD = str(Path(sys.executable).parent / "coord")


def coord(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "300"}
    return subprocess.run(
        [COORD, *args], capture_output=True, text=True, env={**base, **env}, cwd=tmp_path, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"COORD_BUS": "kafak"}, "settings: COORD_BUS='kafak': Input should be 'local' or 'kafka'"),
        ({"COORD_API_PORT": "eighty"}, "settings: COORD_API_PORT='eighty': Input should be a valid integer"),
        (
            {"COORD_SPARK_CONF": "spark.ui.enabled=false"},
            "settings: COORD_SPARK_CONF='spark.ui.enabled=false': not JSON (Expecting value: line 1 column 1 "
            '(char 0)); expected a JSON object, like \'{"name": "value"}\'',
        ),
        (
            {"COORD_SPARK_CONF": '["a"]'},
            "settings: COORD_SPARK_CONF='[\"a\"]': Input should be a valid dictionary",
        ),
        ({"COORD_BUSS": "local"}, "settings: COORD_BUSS is not a setting (did you mean COORD_BUS?)"),
        (
            {"COORD_ALERT_WEBHOOKS": "hooks.example/x"},
            "settings: COORD_ALERT_WEBHOOKS=(hidden): 'hooks.example/x' is not an http(s) URL",  # a secret
        ),
        ({"COORD_API_TOKEN": "x" * 3, "COORD_API_PORT": "-"}, "settings: COORD_API_PORT='-'"),
        # a password in a URL is never printed
        (
            {"COORD_STATE_URL": "postgresql://coord:s3cret@db/coord", "COORD_BATCH_MAX_EVENTS": "0"},
            "settings: COORD_BATCH_MAX_EVENTS='0': Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    done = coord(tmp_path, "info", **env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith(line), done.stderr
    assert "Traceback" not in done.stderr and "pydantic" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "s3cret" not in done.stderr and not done.stdout


def test_every_command_says_it_the_same_way(tmp_path: Path) -> None:
    for command in (["runs"], ["validate", "nope.yaml"], ["run", "nope.yaml"], ["retry", "x"]):
        done = coord(tmp_path, *command, COORD_BUS="kafak")
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert done.stderr == "settings: COORD_BUS='kafak': Input should be 'local' or 'kafka'\n", command


def test_every_problem_is_its_own_line_and_secrets_stay_hidden(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("COORD_TOPIC_EVENTZ=x\nOTHER_TOOL=1\nCOORD_API_TOKEN=tok\n")
    done = coord(tmp_path, "info", COORD_BUS="kafak", COORD_WEBHOOK_SECRET="")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "settings: COORD_TOPIC_EVENTZ is not a setting (did you mean COORD_TOPIC_EVENTS?)",
        "settings: COORD_BUS='kafak': Input should be 'local' or 'kafka'",
    ]


def test_the_alert_webhooks_take_a_url_a_comma_list_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, urls in [
        ("https://hooks.example/a", ["https://hooks.example/a"]),
        (
            "https://hooks.example/a, https://hooks.example/b",
            ["https://hooks.example/a", "https://hooks.example/b"],
        ),
        ('["https://hooks.example/a?x=1,2"]', ["https://hooks.example/a?x=1,2"]),
        ("", []),
    ]:
        monkeypatch.setenv("COORD_ALERT_WEBHOOKS", value)
        assert Settings().alert_webhook_urls() == urls
    monkeypatch.setenv("COORD_ALERT_WEBHOOKS", '["https://a", ')
    with pytest.raises(SettingsError, match=r"^COORD_ALERT_WEBHOOKS=\(hidden\): not a JSON list"):  # a secret
        Settings()


def test_an_unknown_keyword_is_an_error_too() -> None:
    with pytest.raises(SettingsError, match=r"^'buss' is not a setting \(did you mean bus\?\)$"):
        Settings(buss="local")
    with pytest.raises(SettingsError, match=r"^setting bus='kafak': Input should be 'local' or 'kafka'$"):
        Settings(bus="kafak")


def test_variables_that_are_not_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a launched job is told about its run, and the CLI's --spec, are not settings."""
    for name in ("COORD_SPEC", "COORD_JOB", "COORD_PARTITION", "COORD_RUN_ID", "COORD_INPUTS", "COORD_TEST_"):
        monkeypatch.setenv(name, "x")
    assert Settings().bus in ("local", "kafka")


def test_coord_runs_without_a_home_is_one_clear_line(tmp_path: Path) -> None:
    done = coord(tmp_path, "runs", COORD_HOME=str(tmp_path / "nothing-here"))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: no coordinator home at {tmp_path / 'nothing-here'} (COORD_HOME): nothing has run here yet; "
        "`coord run SPEC` creates it, or set COORD_HOME (or COORD_STATE_URL) to the one in use"
    ]
    assert not (tmp_path / "nothing-here").exists()


def test_the_readme_lists_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    names = [f"COORD_{name.upper()}" for name in Settings.model_fields]
    missing = [name for name in names if f"`{name}`" not in table]
    assert not missing, f"add to the README's settings table: {', '.join(missing)}"


def test_help_answers_even_when_a_setting_is_wrong(tmp_path: Path) -> None:
    for args in (["--help"], ["run", "--help"]):
        done = coord(tmp_path, *args, COORD_BUS="kafak")
        assert done.returncode == 0 and "Usage: coord" in done.stdout, (args, done.stderr)


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COORD_HOME", "")  # not the working folder
    monkeypatch.setenv("COORD_STATE_URL", "")
    settings = Settings()
    assert settings.home == Path(".coord") and settings.state_url is None


def test_a_typo_inside_a_json_setting_names_the_key_it_resembles(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = '{"app": {"datasets": ["a"], "partition": "daily", "ofset": "-1d"}}'
    monkeypatch.setenv("COORD_FIVETRAN_CONNECTORS", rule)
    with pytest.raises(SettingsError) as raised:
        Settings()
    assert str(raised.value) == (
        f"COORD_FIVETRAN_CONNECTORS={rule!r}: "
        "app.ofset: Extra inputs are not permitted (did you mean 'offset'?)"
    )


def test_the_service_scripts_port_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/services reads its ports from COORD_*_PORT variables: a shell that moved the
    services to other ports must still run the coordinator (every such variable the script reads)."""
    import re

    script = (Path(__file__).resolve().parents[2] / "scripts" / "services").read_text()
    names = sorted(set(re.findall(r"\$\{(COORD_[A-Z_]+_PORT):-", script)))
    assert len(names) >= 10, names  # the script's ports are read this way
    for name in names:
        monkeypatch.setenv(name, "1")
    assert Settings().bus in ("local", "kafka")


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        # every message would be dead-lettered "oversized: 77 bytes > -5"
        ("COORD_MAX_EVENT_BYTES", "-5", "Input should be greater than or equal to 1024"),
        ("COORD_MAX_EVENT_BYTES", "0", "Input should be greater than or equal to 1024"),
        # librdkafka's consume() refuses more than 1,000,000 at `coord run`
        ("COORD_BATCH_MAX_EVENTS", "2000000", "Input should be less than or equal to 1000000"),
        # the dead-letter book's consumer_group is varchar(255); a lease id NAME#EPOCH fits runs.owner (200)
        ("COORD_CONSUMER_GROUP", "g" * 256, "String should have at most 255 characters"),
        ("COORD_INSTANCE_NAME", "i" * 230, "String should have at most 180 characters"),
        ("COORD_STATE_URL", "mysql://coord:s3cret@db/coord", "the state store is SQLite or PostgreSQL"),
        ("COORD_API_PORT", "70000", "Input should be less than or equal to 65535"),
        ("COORD_API_PORT", "-1", "Input should be greater than or equal to 0"),
        ("COORD_LEASE_TTL_S", "inf", "Input should be a finite number"),
        ("COORD_SHUTDOWN_GRACE_S", "nan", "Input should be a finite number"),
        ("COORD_TOPIC_EVENTS", "bad topic!", "a Kafka topic name is 1 to 249 characters"),
        ("COORD_TOPIC_EVENTS", "t" * 260, "a Kafka topic name is 1 to 249 characters"),
        ("COORD_TOPIC_DEAD_LETTER", "..", "a Kafka topic name is 1 to 249 characters"),
    ],
)
def test_values_the_bus_or_the_store_would_refuse_later_are_refused_at_once(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        Settings()
    line = str(raised.value)
    assert line.startswith(f"{variable}=") and said in line, line
    assert "\n" not in line and "s3cret" not in line


def test_names_with_a_nul_character_are_refused() -> None:
    """A .env file or a keyword can hold one; PostgreSQL text cannot."""
    with pytest.raises(SettingsError) as raised:
        Settings(consumer_group="a\0b", instance_name="x\0")
    assert str(raised.value).splitlines() == [
        "setting consumer_group='a\\x00b': a NUL character is not allowed",
        "setting instance_name='x\\x00': a NUL character is not allowed",
    ]


def test_the_bounds_keep_what_is_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in [
        ("COORD_MAX_EVENT_BYTES", "1024"),
        ("COORD_BATCH_MAX_EVENTS", "1000000"),
        ("COORD_API_PORT", "0"),  # the system picks a free port
        ("COORD_STATE_URL", "postgresql+psycopg://coord@127.0.0.1/coord"),
        ("COORD_TOPIC_EVENTS", "team_a.coord-completions.v2"),
        ("COORD_INSTANCE_NAME", "i" * 180),
    ]:
        monkeypatch.setenv(variable, value)
    assert Settings().batch_max_events == 1_000_000


def test_an_unsupported_state_store_stops_a_command_in_one_line(tmp_path: Path) -> None:
    done = coord(tmp_path, "runs", COORD_STATE_URL="mysql://coord:s3cret@127.0.0.1/coord")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.splitlines() == [
        "settings: COORD_STATE_URL=(hidden): the state store is SQLite or PostgreSQL "
        "(sqlite:///FILE or postgresql://...), not 'mysql'"
    ]
