"""The `score` job kind: an MLflow model over an input table, scores written as Parquet.

    kind: score
    settings:
      model: "models:/churn@champion"       # or models:/churn/3
      input: reporting.user_features        # which input's location to score (default: the first
                                            # input that is not the model registry itself)
      key_columns: [user_id]
      output: "lake/scores/churn/date={partition}"
      engine: inprocess                     # inprocess | spark
      tracking_uri: null                    # default: the coordinator's mlflow_tracking_uri

The scorer (coordinator/scoring/run.py) runs as a detached child process, so a run survives a
coordinator restart and is re-attached, not re-launched. It resolves the alias when it starts
and reports the exact version: in the run's details and in the output event's attributes
(model_name, model_version, model_uri). An input that does not fit the model's signature
makes the run fail with details {"blocked": true, "reason": ..., "mismatched_columns": [...]}
— the engine records such a run as blocked, with the columns named.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path

from coordinator.errors import LaunchError
from coordinator.kinds.score import ScoreSettings
from coordinator.launchers import process
from coordinator.launchers.base import Handle, RunContext, RunResult
from coordinator.readiness import Version
from coordinator.scoring.registry import REGISTRY_PREFIX

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def scored_input(ctx: RunContext, name: str | None) -> Version:
    """The input version to score: the one named (full name or last dotted part), else the first
    input that is not the model registry (`mlflow.models.*`, which only says the model changed)."""
    candidates = [i for i in ctx.inputs if not i.dataset.startswith(REGISTRY_PREFIX)]
    if name is not None:
        candidates = [i for i in ctx.inputs if i.dataset == name or i.dataset.endswith("." + name)]
    if not candidates:
        given = ", ".join(i.dataset for i in ctx.inputs) or "none"
        what = f"named {name!r}" if name else "to score"
        raise LaunchError(f"{ctx.job}: no input {what} (inputs: {given})")
    if len({i.dataset for i in candidates}) > 1 and name is not None:
        raise LaunchError(f"{ctx.job}: input name {name!r} is ambiguous")
    chosen = candidates[0]
    if not chosen.location:
        raise LaunchError(
            f"{ctx.job}: input {chosen.dataset} has no location (its completion event carried none)"
        )
    return chosen


class ScoreLauncher(process.ProcessLauncher):
    kind = "score"
    settings_model = ScoreSettings

    def job_settings(self, ctx: RunContext) -> ScoreSettings:
        return super().job_settings(ctx)

    def command(self, ctx: RunContext, js: ScoreSettings) -> list[str]:
        source = scored_input(ctx, js.input)
        dataset = ctx.outputs[0] if ctx.outputs else None
        argv = [
            sys.executable,
            "-m",
            "coordinator.scoring.run",
            "--model",
            js.model,
            "--tracking-uri",
            js.tracking_uri or self.settings.resolved_mlflow_uri(),
            "--input",
            source.location or "",
            "--output",
            js.output_location(dataset or "", ctx.job, ctx.partition),
            "--engine",
            js.engine,
            "--batch-rows",
            str(js.batch_rows),
            "--spark-master",
            self.settings.spark_master,
        ]
        for key in js.key_columns:
            argv += ["--key-column", key]
        if dataset:
            argv += ["--dataset", dataset]
        return argv

    def begin(self, ctx: RunContext) -> Callable[[], Handle]:
        js = self.job_settings(ctx)
        paths = (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))
        env = {
            "PYSPARK_PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            **ctx.env,
        }
        return process.begin_process(self.kind, self.command(ctx, js), ctx.workdir, env=env).handle

    def wait(self, handle: Handle, ctx: RunContext) -> RunResult:
        result = super().wait(handle, ctx)
        if result.details.get("blocked"):
            return dataclasses.replace(result, error=f"blocked: {result.details.get('reason')}")
        return result
