"""Why the settings cannot be built, as one line per problem naming the variable and the value.

A user sets COORD_BUS=kafak in a shell or a .env file; what they need back is that variable,
what it held and what is allowed — not the field name `bus` inside a pydantic traceback. So
every failure while the settings are read becomes a SettingsError whose lines read:

    COORD_BUS='kafak': Input should be 'local' or 'kafka'
    COORD_SPARK_CONF='{x}': not JSON (Expecting property name ...); expected a JSON object, like '{"k": "v"}'
    COORD_BUS_TYPO is not a setting (did you mean COORD_BUS?)

Values of secrets (and passwords inside URLs) are never shown.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from coordinator.identifiers import name_problems
from coordinator.validation import error_message, message

PREFIX = "COORD_"
# COORD_ variables that are not settings: the CLI's --spec default, what a launched job is told
# about its run (launchers/command.py run_env, the result protocol, the push child's settings),
# the service script's ports, and the test suite's service addresses and knobs
NOT_SETTINGS = frozenset(
    {
        "COORD_SPEC",
        "COORD_JOB",
        "COORD_PARTITION",
        "COORD_RUN_ID",
        "COORD_ATTEMPT",
        "COORD_OUTPUTS",
        "COORD_INPUTS",
        "COORD_RESULT_FILE",
        "COORD_PUSH_SETTINGS",
        "COORD_KAFKA_PORT",
        "COORD_KAFKA_CONTROLLER_PORT",
        "COORD_PG_PORT",
        "COORD_MYSQL_PORT",
        "COORD_SPARK_PORT",
        "COORD_SPARK_REST_PORT",
        "COORD_SPARK_UI_PORT",
        "COORD_SPARK_WORKER_PORT",
        "COORD_SPARK_WORKER_UI_PORT",
        "COORD_MLFLOW_PORT",
        "COORD_FUZZ_EXAMPLES",
    }
)
NOT_SETTINGS_PREFIXES = ("COORD_TEST_",)
_SECRET_NAMES = ("token", "secret", "password", "security")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def variable(field: str) -> str:
    return PREFIX + field.upper()


def unknown_names(model: type[BaseModel], init: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """A line for each keyword and COORD_ variable that names no setting (a typo is an error)."""
    fields = set(model.model_fields)
    lines = [
        f"{name!r} is not a setting{_nearest(name, fields)}"
        for name in init
        if name not in fields and not name.startswith("_")  # _env_file and the like are pydantic's
    ]
    names = {variable(f) for f in fields}
    for name in sorted(env):
        upper = name.upper()
        if (
            upper.startswith(PREFIX)
            and upper not in names
            and upper not in NOT_SETTINGS
            and not upper.startswith(NOT_SETTINGS_PREFIXES)
        ):
            lines.append(f"{name} is not a setting{_nearest(upper, names)}")
    return lines


def dotenv_names(path: str | Path | None) -> dict[str, str]:
    """The COORD_ variables of a .env file (the settings read it too)."""
    if not path or not Path(path).is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v or "" for k, v in dotenv_values(path).items() if k.upper().startswith(PREFIX)}


def describe(
    exc: Exception, model: type[BaseModel], init: Mapping[str, Any], env: Mapping[str, str]
) -> list[str]:
    """One line per problem in `exc` (a ValidationError, or pydantic-settings' parse error)."""
    if isinstance(exc, ValidationError):
        lines = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            msg = error_message(err) if err["type"] == "missing" else message(err, model)
            if not loc:  # a rule over several settings names its variables itself
                lines.append(msg)
                continue
            inner = f"{'.'.join(loc[1:])}: " if len(loc) > 1 else ""
            lines.append(f"{_where(loc[0], model, init, env)}: {inner}{msg}")
        return list(dict.fromkeys(lines))
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else None
    if field is None or field not in model.model_fields:
        return [f"the settings cannot be read: {exc}"]
    cause = exc.__cause__
    why = f"not JSON ({cause})" if isinstance(cause, json.JSONDecodeError) else str(cause or exc)
    return [f"{_where(field, model, init, env)}: {why}; expected {_json_shape(model, field)}"]


def _where(field: str, model: type[BaseModel], init: Mapping[str, Any], env: Mapping[str, str]) -> str:
    if field in init:
        return f"setting {field}={_shown(field, model, init[field])}"
    name = variable(field)
    raw = next((v for k, v in env.items() if k.upper() == name), None)
    return name if raw is None else f"{name}={_shown(field, model, raw)}"


def _shown(field: str, model: type[BaseModel], value: Any) -> str:
    annotation = model.model_fields[field].annotation if field in model.model_fields else None
    if any(s in field for s in _SECRET_NAMES) or SecretStr in _parts(annotation):
        return "(hidden)"
    text = _URL_PASSWORD.sub(r"\1***@", str(value))
    return repr(text if len(text) <= 120 else text[:117] + "...")


def _json_shape(model: type[BaseModel], field: str) -> str:
    origin = typing.get_origin(model.model_fields[field].annotation)
    if origin is dict:
        return 'a JSON object, like \'{"name": "value"}\''
    if origin in (list, tuple, set):
        return 'a JSON list, like \'["a", "b"]\''
    return "JSON"


def _parts(annotation: Any) -> Iterable[Any]:
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _parts(arg)


def _nearest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


# ---------------------------------------------------------------- checks of single values
# (the settings' own validators: each says what is allowed, for the line naming the variable)


def no_nul(value: str) -> str:
    """PostgreSQL text cannot hold a NUL character: a name with one fails at every write."""
    if "\0" in value:
        raise ValueError("a NUL character is not allowed")
    return value


def topic_name(value: str) -> str:
    """Kafka's rule for a topic name (identifiers.py's, which a push to Kafka checks too). A name
    the broker refuses leaves the consumer subscribed to nothing: `coord run` would consume
    nothing and exit 0, saying nothing."""
    if name_problems("kafka", [("topic", value)]):
        raise ValueError(
            "a Kafka topic name is 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-', "
            "and not '.' or '..'"
        )
    return value


STATE_SCHEMES = ("sqlite", "postgresql")


def state_scheme(value: SecretStr) -> SecretStr:
    """The state store runs on SQLite or PostgreSQL only (its SQL, locks and migrations are
    theirs); another database would fail later, on a driver it does not have or on its SQL."""
    url = value.get_secret_value()
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme not in STATE_SCHEMES:
        shown = repr(scheme) if scheme else "no scheme"
        raise ValueError(
            f"the state store is SQLite or PostgreSQL (sqlite:///FILE or postgresql://...), not {shown}"
        )
    return value
