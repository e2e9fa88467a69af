"""The `command` kind's settings: any executable, for systems the other kinds do not cover.

settings: {command: ["my-tool", "--day", "{partition}"], env: {TOKEN: "${TOKEN}"}, cwd: null}
"""

from __future__ import annotations

import shlex
from typing import Annotated

from pydantic import AfterValidator, Field

from coordinator.kinds.base import KindSettings


def _runnable(command: list[str] | str) -> list[str] | str:
    """An argv with a program to run: `[]`, `""` or `["", ...]` passed validation and then
    failed every launch (the launcher runs argv[0]); a string shlex cannot split, likewise."""
    try:
        argv = shlex.split(command) if isinstance(command, str) else command
    except ValueError as exc:
        raise ValueError(f"cannot split {command!r} like a shell would: {exc}") from None
    if not argv or not argv[0].strip():
        raise ValueError("a command names the program to run, like ['my-tool', '{partition}']")
    return command


class CommandSettings(KindSettings):
    command: Annotated[list[str] | str, AfterValidator(_runnable)] = Field(
        description="argv, or one string split like a shell would"
    )
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None

    def argv(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)
