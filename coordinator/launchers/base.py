"""The launcher interface: how the engine starts, watches and stops one run of a job.

One adapter per job kind (command, spark, score, reverse_etl). A launch returns a `Handle`
that is stored with the run: after a coordinator restart, `attach(handle)` re-attaches to
the still-running job instead of launching it again.

Failure contract: `start` raises LaunchError when the job could not be started; `wait`
returns a `RunResult` for a finished job (succeeded or failed — a failed job is a result,
not an exception) and raises LaunchError only when the job cannot be watched at all.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from coordinator.errors import LaunchError
from coordinator.events import Column
from coordinator.handles import Handle as Handle  # re-exported: the launchers' pointer type
from coordinator.readiness import Version
from coordinator.settings import Settings


def InputRef(  # noqa: N802 — builds the one input type, as the name it always had
    dataset: str,
    partition: str | None,
    event_id: str,
    location: str | None = None,
    row_count: int | None = None,
    columns: tuple[Column, ...] | None = None,
    produced_at: float = 0.0,
) -> Version:
    """One input version a run consumes, built by hand (tools, tests) by the fields a launcher
    reads. The engine hands launchers the very `readiness.Version`s a run consumes: one type."""
    return Version(event_id, dataset, partition, produced_at, row_count, location, columns)


@dataclass(frozen=True)
class RunContext:
    """Everything a launcher needs to know about one run."""

    run_id: str
    job: str
    partition: str | None
    attempt: int
    settings: Mapping[str, object]  # the job's kind-specific settings from the spec
    inputs: tuple[Version, ...]  # the input versions, as readiness chose them
    outputs: tuple[str, ...]  # output dataset names
    workdir: Path  # a folder of this run's own (logs, result file)
    timeout_s: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputReport:
    """What a job says it produced for one output dataset."""

    dataset: str
    location: str | None = None
    row_count: int | None = None
    columns: tuple[Column, ...] | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    # None: as the run ends. A job that builds several outputs in one go (a dbt invocation) says
    # how each ended: "succeeded", "failed" (with its own `error`) or "skipped" (no event at all)
    status: Literal["succeeded", "failed", "skipped"] | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunResult:
    succeeded: bool
    error: str | None = None
    outputs: tuple[OutputReport, ...] = ()
    log_path: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)  # e.g. model version, push counts


class Launcher(abc.ABC):
    """Constructed once per coordinator with the Settings; one instance serves many runs at once.

    `settings_model` validates the job's kind-specific `settings:` block when the spec loads,
    so a bad setting is reported with file and line before anything runs.
    """

    kind: str
    settings_model: type[BaseModel] | None = None
    # True where `start` only spawns a local process (no network, no waiting): the engine then
    # calls `begin` on its loop's thread right after the claim commits (coordinator/workers.py)
    quick_start: bool = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def job_settings(self, ctx: RunContext) -> Any:
        """The run's kind settings as `settings_model` (already validated when the spec loaded;
        validated here again for runs built by hand). Raises LaunchError when they do not fit."""
        if self.settings_model is None or isinstance(ctx.settings, self.settings_model):
            return ctx.settings
        try:
            return self.settings_model.model_validate(dict(ctx.settings))
        except ValueError as exc:
            raise LaunchError(f"invalid {self.kind} settings for {ctx.job}: {exc}") from exc

    @abc.abstractmethod
    def start(self, ctx: RunContext) -> Handle:
        """Start the job and return at once. Raises LaunchError if it could not start."""

    def begin(self, ctx: RunContext) -> Callable[[], Handle]:
        """The launch asked for, completed by calling what this returns, which gives the handle
        (and raises as `start` does). The engine asks for all of a turn's `quick_start` launches
        before it completes any (coordinator/workers.py); by default the whole start happens in
        the completing call."""
        return functools.partial(self.start, ctx)

    @abc.abstractmethod
    def wait(self, handle: Handle, ctx: RunContext) -> RunResult:
        """Block until the job ends (enforcing ctx.timeout_s by stopping it) and report the result."""

    @abc.abstractmethod
    def cancel(self, handle: Handle) -> None:
        """Stop the job if it still runs. Never raises for a job that already ended."""

    def is_alive(self, handle: Handle) -> bool:
        """Whether the job behind a stored handle still runs (used on restart to re-attach)."""
        return False
