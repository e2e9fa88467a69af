"""The `command` kind: any executable, for systems the other kinds do not cover.

    settings: {command: ["my-tool", "--day", "{partition}"], env: {TOKEN: "${TOKEN}"}, cwd: null}

`{partition}`, `{job}`, `{run_id}`, `{attempt}` and `{workdir}` in the command and env values
are replaced; nothing else in braces is touched, so shell snippets stay intact. The process also
gets COORD_JOB, COORD_PARTITION, COORD_RUN_ID, COORD_ATTEMPT, COORD_OUTPUTS (comma-separated)
and COORD_INPUTS (a JSON list of the exact input versions), and reports outputs through the
result protocol (coordinator/launchers/result.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from coordinator.kinds.command import CommandSettings
from coordinator.launchers.base import Handle, RunContext
from coordinator.launchers.process import ProcessLauncher, begin_process


def substitute(text: str, ctx: RunContext) -> str:
    values = {
        "partition": ctx.partition or "",
        "job": ctx.job,
        "run_id": ctx.run_id,
        "attempt": str(ctx.attempt),
        "workdir": str(ctx.workdir),
    }
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def run_env(ctx: RunContext) -> dict[str, str]:
    """The variables every process-based job gets about its run."""
    inputs = [
        {
            "dataset": i.dataset,
            "partition": i.partition,
            "event_id": i.event_id,
            "location": i.location,
            "row_count": i.row_count,
        }
        for i in ctx.inputs
    ]
    return {
        "COORD_JOB": ctx.job,
        "COORD_PARTITION": ctx.partition or "",
        "COORD_RUN_ID": ctx.run_id,
        "COORD_ATTEMPT": str(ctx.attempt),
        "COORD_OUTPUTS": ",".join(ctx.outputs),
        "COORD_INPUTS": json.dumps(inputs),
    }


class CommandLauncher(ProcessLauncher):
    kind = "command"
    settings_model = CommandSettings

    def begin(self, ctx: RunContext) -> Callable[[], Handle]:
        cfg = CommandSettings.model_validate(dict(ctx.settings))
        argv = [substitute(a, ctx) for a in cfg.argv()]
        env = {**run_env(ctx), **dict(ctx.env), **{k: substitute(v, ctx) for k, v in cfg.env.items()}}
        cwd = Path(substitute(cfg.cwd, ctx)) if cfg.cwd else None
        return begin_process(self.kind, argv, ctx.workdir, env=env, cwd=cwd).handle
