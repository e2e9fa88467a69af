"""A launcher that runs nothing: scripted results per job, partition and attempt, in process.

Beside the real kinds as a stub broker is beside real brokers: the engine's own tests and the
benchmarks use it where a real job would add process start-up and `sleep` for timing. It keeps
the launcher contract — `start` returns a JSON-storable handle, `wait` reports a `RunResult`,
`is_alive` and `cancel` work on a stored handle — and its attempts live as long as the
launcher object, so a coordinator built again in the same process (a restart) re-attaches to
an attempt still running, or reads the result of one that ended meanwhile.

    stub = StubLauncher(kind="command")           # serves the spec's `command` jobs
    stub.script("load", fail("ERROR: nope"))      # every attempt of load fails ...
    stub.script("load", succeed(output("mid", row_count=42)), attempt=3)  # ... but the third
    stub.script("slow", succeed(until=release))   # runs until the event `release` is set
    Coordinator(spec, settings, launchers={"command": stub})
    stub.runs                                     # every attempt started, in order

What an attempt does is the script of the most specific key that matches it — (job,
partition, attempt), then (job, partition, any attempt), (job, any partition, attempt), (job,
any, any) — else `default` (success). It takes `seconds` on the launcher's clock (`clock`
and `sleep` can be injected) or runs `until` an event is set, bounded by the job's timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from coordinator.errors import LaunchError
from coordinator.events import Column
from coordinator.launchers.base import Handle, Launcher, OutputReport, RunContext, RunResult
from coordinator.readiness import Version
from coordinator.settings import Settings

ANY = object()  # a script key's partition or attempt that matches every one


@dataclass(frozen=True)
class Script:
    """What one attempt does: its result, and how long it runs before reporting it."""

    succeeded: bool = True
    error: str | None = None
    outputs: tuple[OutputReport, ...] = ()
    details: Mapping[str, object] = field(default_factory=dict)
    seconds: float = 0.0  # runs this long on the launcher's clock
    until: threading.Event | None = None  # runs until this is set


def output(
    dataset: str,
    row_count: int | None = None,
    location: str | None = None,
    columns: Iterable[tuple[str, str]] | None = None,
    **attributes: str,
) -> OutputReport:
    """What a job reports for one output; `columns` as (name, type) pairs."""
    cols = None if columns is None else tuple(Column(name=n, type=t) for n, t in columns)
    return OutputReport(dataset, location, row_count, cols, attributes)


def succeed(
    *outputs: OutputReport, seconds: float = 0.0, until: threading.Event | None = None, **details: object
) -> Script:
    return Script(True, None, outputs, details, seconds, until)


def fail(
    error: str, *, seconds: float = 0.0, until: threading.Event | None = None, **details: object
) -> Script:
    return Script(False, error, (), details, seconds, until)


def refuse(reason: str, **details: object) -> Script:
    """The job refuses its input (reports {"blocked": true}, as a model signature mismatch
    does): the engine blocks the run instead of retrying it."""
    return Script(False, reason, (), {"blocked": True, "reason": reason, **details})


@dataclass
class StubRun:
    """One attempt started by the stub."""

    run_id: str
    job: str
    partition: str | None
    attempt: int
    inputs: tuple[Version, ...]
    script: Script
    started_at: float
    ended_at: float | None = None  # set by the first wait that saw it end
    cancelled: bool = False


class StubLauncher(Launcher):
    """Scripted attempts (see the module docstring). Thread-safe: many runs at once."""

    kind = "stub"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        kind: str | None = None,
        default: Script = Script(),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(settings if settings is not None else Settings())
        self.kind = kind or self.kind
        self.default, self.clock, self.sleep = default, clock, sleep
        self.scripts: dict[tuple[str, object, object], Script] = {}
        self.runs: list[StubRun] = []  # every attempt started, in order
        self._live: dict[tuple[str, int], StubRun] = {}

    def script(self, job: str, script: Script, *, partition: object = ANY, attempt: object = ANY) -> None:
        """What the attempts of `job` (of one partition, of one attempt number) do from now on."""
        self.scripts[(job, partition, attempt)] = script

    def ran(self, job: str | None = None) -> list[tuple[str, str | None]]:
        """(job, partition) of every attempt started (of `job`), in start order."""
        return [(r.job, r.partition) for r in self.runs if job is None or r.job == job]

    def _script_for(self, ctx: RunContext) -> Script:
        get = self.scripts.get
        for key in (
            (ctx.job, ctx.partition, ctx.attempt),
            (ctx.job, ctx.partition, ANY),
            (ctx.job, ANY, ctx.attempt),
            (ctx.job, ANY, ANY),
        ):
            found = get(key)
            if found is not None:
                return found
        return self.default

    def start(self, ctx: RunContext) -> Handle:
        run = StubRun(
            ctx.run_id, ctx.job, ctx.partition, ctx.attempt, ctx.inputs, self._script_for(ctx), self.clock()
        )
        self._live[(ctx.run_id, ctx.attempt)] = run
        self.runs.append(run)
        return Handle(self.kind, {"run_id": ctx.run_id, "attempt": ctx.attempt})

    @staticmethod
    def _key(handle: Handle) -> tuple[str, int]:
        return str(handle.data.get("run_id")), int(str(handle.data.get("attempt", 0)))

    def _run(self, handle: Handle) -> StubRun:
        run = self._live.get(self._key(handle))
        if run is None:
            raise LaunchError(f"no stub attempt behind {dict(handle.data)} (they live in one process)")
        return run

    def wait(self, handle: Handle, ctx: RunContext) -> RunResult:
        run = self._run(handle)
        script, timeout = run.script, ctx.timeout_s
        if script.until is not None:
            deadline = None if timeout is None else run.started_at + timeout
            while not script.until.wait(0.01):
                if run.cancelled:
                    return self._end(run, RunResult(False, error="cancelled"))
                if deadline is not None and self.clock() >= deadline:
                    return self._end(run, RunResult(False, error=f"timed out after {timeout} s"))
        elif script.seconds:
            ends = run.started_at + (script.seconds if timeout is None else min(script.seconds, timeout))
            left = ends - self.clock()
            if left > 0:
                self.sleep(left)
            if timeout is not None and script.seconds > timeout:
                return self._end(run, RunResult(False, error=f"timed out after {timeout} s"))
        if run.cancelled:
            return self._end(run, RunResult(False, error="cancelled"))
        return self._end(run, RunResult(script.succeeded, script.error, script.outputs, None, script.details))

    def _end(self, run: StubRun, result: RunResult) -> RunResult:
        if run.ended_at is None:
            run.ended_at = self.clock()
        return result

    def cancel(self, handle: Handle) -> None:
        run = self._live.get(self._key(handle))
        if run is not None:  # never raises for a job that is not there (it ended with its process)
            run.cancelled = True

    def is_alive(self, handle: Handle) -> bool:
        run = self._live.get(self._key(handle))
        if run is None:
            return False
        if run.ended_at is not None or run.cancelled:
            return False
        if run.script.until is not None:
            return not run.script.until.is_set()
        return self.clock() < run.started_at + run.script.seconds
