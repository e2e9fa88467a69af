"""What the kinds' settings models share: frozen, no unknown keys, paths relative to the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator


def with_spec_dir(data: Any, info: ValidationInfo) -> Any:
    """For a kind's settings model (`mode="before"` validator): default `base_dir` to the folder
    of the spec file being loaded, which the loader passes as validation context, so relative
    paths in a spec mean the same wherever the coordinator was started."""
    context = info.context or {}
    spec_dir = context.get("spec_dir") or context.get("base_dir")
    if isinstance(data, dict) and spec_dir and not data.get("base_dir"):
        data = {**data, "base_dir": str(Path(spec_dir).resolve())}
    return data


class KindSettings(BaseModel):
    """Base of every kind's settings: a typo is an error, and a validated value never changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SpecRelative(KindSettings):
    """Settings with paths: `base_dir` (default: the spec file's folder) is what they resolve against."""

    base_dir: str | None = Field(
        default=None,
        description="folder relative paths resolve against; "
        "set to the spec file's folder when the spec loads",
    )

    @model_validator(mode="before")
    @classmethod
    def _base_dir_from_context(cls, data: Any, info: ValidationInfo) -> Any:
        return with_spec_dir(data, info)

    def folder(self) -> Path:
        return Path(self.base_dir) if self.base_dir else Path.cwd()
