"""The `score` kind's settings, and the model reference they name (checked when the spec loads).

    settings:
      model: "models:/churn@champion"       # or models:/churn/3, models:/churn/latest
      input: reporting.user_features        # which input's location to score
      key_columns: [user_id]
      output: "lake/scores/churn/date={partition}"
      engine: inprocess                     # inprocess | spark
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from coordinator.errors import LaunchError, ScoringError
from coordinator.kinds.base import SpecRelative

_REF = re.compile(r"^(?:models:/)?(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+)|/(?P<version>\d+|latest))$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None  # digits, or "latest"


def parse_ref(ref: str) -> ModelRef:
    """`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/NAME/latest` (the prefix optional)."""
    match = _REF.match(ref.strip())
    if not match:
        raise ScoringError(
            f"not a model reference: {ref!r} (expected models:/NAME@ALIAS or models:/NAME/VERSION)"
        )
    return ModelRef(match["name"], match["alias"], match["version"])


class ScoreSettings(SpecRelative):
    """The `settings:` block of a `kind: score` job. Relative paths are relative to the spec's folder."""

    model: str = Field(description="models:/NAME@ALIAS or models:/NAME/VERSION, resolved at run start")
    input: str | None = Field(default=None, description="the input dataset whose location is scored")
    key_columns: tuple[str, ...] = Field(min_length=1, description="copied from the input to the scores")
    output: str = Field(description="Parquet folder; {partition}, {dataset} and {job} are replaced")
    engine: Literal["inprocess", "spark"] = "inprocess"
    tracking_uri: str | None = None
    batch_rows: int = Field(default=262_144, gt=0, description="rows per Arrow batch (in-process)")

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
        return str((self.folder() / text).resolve())
