"""The `reverse_etl` kind: a push (coordinator/push) run as a detached child process.

    settings:
      source: {input: scores.churn}        # or {parquet: "dir/{partition}"}, {sql: "…", url: "…"}, {spark: t}
      destination: {url: "postgresql://...", table: user_scores}
      mode: upsert                         # insert | upsert | update | mirror
      key: [user_id]
      columns: {src_name: dest_name}       # optional
      create_table: true
      max_rejected_fraction: 0.01

The push runs as `python -m coordinator.push.run` through launchers/process.py, so it survives
a coordinator restart and is re-attached, not re-run. Its counts (inserted, updated, deleted,
unchanged, rejected, skipped) come back as the run's details and as attributes of each output
dataset's completion event; rejected rows are in `rejects.jsonl` in the run's folder.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from coordinator.errors import LaunchError
from coordinator.kinds.reverse_etl import PushSettings
from coordinator.launchers.base import Handle, RunContext
from coordinator.launchers.process import ProcessLauncher, begin_process
from coordinator.push.run import SETTINGS_ENV


def settings_json(settings: PushSettings) -> str:
    """The settings as JSON with the password revealed (it travels in the child's environment only)."""
    data = settings.model_dump(mode="json", by_alias=True)
    if settings.destination.password is not None:
        data["destination"]["password"] = settings.destination.password.get_secret_value()
    return json.dumps(data)


class ReverseEtlLauncher(ProcessLauncher):
    kind = "reverse_etl"
    settings_model = PushSettings

    def begin(self, ctx: RunContext) -> Callable[[], Handle]:
        raw = ctx.settings
        settings = raw if isinstance(raw, PushSettings) else PushSettings.model_validate(dict(raw))
        argv = [
            sys.executable,
            "-m",
            "coordinator.push.run",
            "--job",
            ctx.job,
            "--state-dir",
            str((self.settings.home / "push").resolve()),
            "--rejects",
            str(ctx.workdir / "rejects.jsonl"),
            "--kafka-bootstrap",
            self.settings.kafka_bootstrap_servers,
        ]
        if ctx.partition is not None:
            argv += ["--partition", ctx.partition]
        if settings.source.input:
            found = [i for i in ctx.inputs if i.dataset == settings.source.input]
            if not found or not found[-1].location:
                raise LaunchError(
                    f"job {ctx.job}: input {settings.source.input!r} has no location to push from"
                )
            argv += ["--location", str(found[-1].location)]
        for output in ctx.outputs:
            argv += ["--output", output]
        env = {**dict(ctx.env), SETTINGS_ENV: settings_json(settings)}
        return begin_process(self.kind, argv, ctx.workdir, env=env).handle
