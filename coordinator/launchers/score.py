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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from coordinator.errors import LaunchError, ScoringError
from coordinator.launchers import process
from coordinator.launchers.base import Handle, InputRef, RunContext, RunResult, with_spec_dir
from coordinator.scoring.registry import REGISTRY_PREFIX
from coordinator.scoring.resolve import parse_ref

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ScoreSettings(BaseModel):
    """The `settings:` block of a `kind: score` job. Relative paths are relative to the spec's folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="models:/NAME@ALIAS or models:/NAME/VERSION, resolved at run start")
    input: str | None = Field(default=None, description="the input dataset whose location is scored")
    key_columns: tuple[str, ...] = Field(min_length=1, description="copied from the input to the scores")
    output: str = Field(description="Parquet folder; {partition}, {dataset} and {job} are replaced")
    engine: Literal["inprocess", "spark"] = "inprocess"
    tracking_uri: str | None = None
    batch_rows: int = Field(default=262_144, gt=0, description="rows per Arrow batch (in-process)")
    base_dir: str | None = Field(
        default=None,
        description="folder relative paths resolve against; "
        "set to the spec file's folder when the spec loads",
    )

    @model_validator(mode="before")
    @classmethod
    def _base_dir_from_context(cls, data: Any, info: ValidationInfo) -> Any:
        return with_spec_dir(data, info)

    @model_validator(mode="after")
    def _check_model(self) -> ScoreSettings:
        try:
            parse_ref(self.model)
        except ScoringError as exc:  # reported by the spec loader with file and line
            raise ValueError(str(exc)) from None
        return self

    def output_location(self, dataset: str, job: str, partition: str | None) -> str:
        if "{partition}" in self.output and partition is None:
            raise LaunchError(f"{job}: output {self.output!r} needs a partition, and this run has none")
        text = (
            self.output.replace("{partition}", partition or "")
            .replace("{dataset}", dataset)
            .replace("{job}", job)
        )
        if "://" in text or text.startswith("file:"):
            return text
        return str(((Path(self.base_dir) if self.base_dir else Path.cwd()) / text).resolve())


def scored_input(ctx: RunContext, name: str | None) -> InputRef:
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

    def start(self, ctx: RunContext) -> Handle:
        js = self.job_settings(ctx)
        paths = (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))
        env = {
            "PYSPARK_PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            **ctx.env,
        }
        return process.start_process(self.kind, self.command(ctx, js), ctx.workdir, env=env)

    def wait(self, handle: Handle, ctx: RunContext) -> RunResult:
        result = super().wait(handle, ctx)
        if result.details.get("blocked"):
            return dataclasses.replace(result, error=f"blocked: {result.details.get('reason')}")
        return result
