"""What the kinds whose child is one of the project's own Python modules (el: coordinator/eljob.py,
dbt: coordinator/dbtjob.py) share, on both sides of the process boundary.

Launcher side: the child's environment, the settings as JSON (secrets revealed: they travel in
the child's environment only), and a failed result whose error is the child's own cause.
Child side: `Refused` for a run that cannot go on, and `finish`, which turns it into the
result file's `error` detail (and `blocked`, when the line says so) and exit code 1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from coordinator.launchers.base import Handle, RunContext, RunResult
from coordinator.launchers.process import ProcessLauncher, begin_process
from coordinator.launchers.result import report_details

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BLOCKED = "blocked: "


class Refused(Exception):
    """A run that cannot go on, with the one line that says why (starting "blocked: " when the
    same inputs would be refused again, so it is not retried)."""


def one_line(text: str) -> str:
    return " ".join(text.split())[:2000]


def settings_json(settings: BaseModel, base_dir: Path) -> str:
    """The settings as the spec gave them, `base_dir` fixed (the child's working folder is the
    user's project, not the coordinator's) and every secret revealed."""

    def shown(model: BaseModel) -> dict[str, Any]:
        out = model.model_dump(mode="json", exclude_unset=True)
        for name in model.model_fields_set:
            value = getattr(model, name)
            if isinstance(value, SecretStr):
                out[name] = value.get_secret_value()
            elif isinstance(value, BaseModel):
                out[name] = shown(value)
        return out

    return json.dumps({**shown(settings), "base_dir": str(base_dir)})


def child_env(ctx: RunContext, settings_env: str, settings_json: str) -> dict[str, str]:
    """The coordinator importable from the user's folder (the child's working folder), the run's
    own variables, and the job's settings in one variable of the child only."""
    paths = (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))
    python_path = os.pathsep.join(p for p in paths if p)
    return {"PYTHONPATH": python_path, **dict(ctx.env), settings_env: settings_json}


def with_cause(result: RunResult) -> RunResult:
    """A failed result whose error is the child's own one-line cause (details `error`), when it
    reported one, rather than the last line its libraries happened to log."""
    cause = result.details.get("error")
    if result.succeeded or not cause or result.details.get("timed_out"):
        return result
    return dataclasses.replace(result, error=str(cause))


class ChildLauncher(ProcessLauncher):
    """A kind whose job is `python -m <module> --job J --workdir W [--partition P] [--output D]...`
    with the job's settings in `settings_env`, run in the user's project folder."""

    module: str
    settings_env: str
    quiet_env: dict[str, str] = {}  # the libraries' own telemetry off

    def begin(self, ctx: RunContext) -> Callable[[], Handle]:
        settings = self.job_settings(ctx)
        argv = [sys.executable, "-m", self.module, "--job", ctx.job, "--workdir", str(ctx.workdir)]
        if ctx.partition is not None:
            argv += ["--partition", ctx.partition]
        for output in ctx.outputs:
            argv += ["--output", output]
        shown = settings_json(settings, settings.folder().resolve())
        env = {**self.quiet_env, **child_env(ctx, self.settings_env, shown)}
        return begin_process(self.kind, argv, ctx.workdir, env=env, cwd=settings.project()).handle

    def wait(self, handle: Handle, ctx: RunContext) -> RunResult:
        return with_cause(super().wait(handle, ctx))


def child_args(prog: str) -> Any:
    """The command line every such child takes (ChildLauncher.start)."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--job", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--partition")
    parser.add_argument("--output", action="append", default=[])
    return parser


def finish(run: Callable[[], None]) -> int:
    """Run the child's work; a `Refused` becomes its cause in the result file and exit code 1."""
    try:
        run()
    except Refused as exc:
        line = str(exc)
        report_details({"error": line.removeprefix(BLOCKED), "blocked": line.startswith(BLOCKED)})
        print(f"error: {line}", file=sys.stderr)
        return 1
    return 0
