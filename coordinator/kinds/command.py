"""The `command` kind's settings: any executable, for systems the other kinds do not cover.

    settings: {command: ["my-tool", "--day", "{partition}"], env: {TOKEN: "${TOKEN}"}, cwd: null}
"""

from __future__ import annotations

import shlex

from pydantic import Field

from coordinator.kinds.base import KindSettings


class CommandSettings(KindSettings):
    command: list[str] | str = Field(description="argv, or one string split like a shell would")
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None

    def argv(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)
