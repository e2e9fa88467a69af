"""The `stream` kind's settings: a long-running faust-streaming worker whose closed hourly windows
become partitions of the job's one (hourly) output dataset.

    jobs:
      clicks_hourly:
        kind: stream
        outputs: [stream.clicks]          # partitioning: hourly
        settings: {topic: web.clicks, time_field: ts, key_field: user_id, lateness_s: 600}

The worker (coordinator/streamjob.py) runs in its own interpreter, `python` (default: the
repository's .venv-stream, made by `scripts/bootstrap stream`), because faust-streaming cannot be
installed beside the coordinator's dependencies. The service supervises it (launchers/stream.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from coordinator.kinds.base import SpecRelative

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_PYTHON = REPO_ROOT / ".venv-stream" / "bin" / "python"
MAKE_PYTHON = "scripts/bootstrap stream"


class StreamSettings(SpecRelative):
    topic: str = Field(min_length=1, description="the Kafka topic of the events (must exist)")
    time_field: str = Field(default="ts", min_length=1, description="event time: epoch seconds or ISO 8601")
    key_field: str | None = Field(default=None, description="a field counted per value within each window")
    lateness_s: float = Field(default=600.0, ge=0, description="how late after its window data may come")
    group: str | None = Field(default=None, description="the consumer group (default coord-stream-<job>)")
    output: str | None = Field(
        default=None,
        description="each window's folder, a template with {partition} (and {dataset}, {job}), as "
        "batch jobs' outputs are; default: <run folder>/windows/{dataset}/{partition}",
    )
    output_dir: str | None = Field(
        default=None, description="the older form: output <output_dir>/{dataset}/{partition}"
    )
    python: str | None = Field(default=None, description="the worker's interpreter (default .venv-stream)")
    late_data: Literal["count", "reannounce"] = Field(
        default="count", description="late data is counted; reannounce also revises its window"
    )
    revise_within_s: float = Field(default=7 * 86400.0, gt=0, description="how long a window may be revised")
    heartbeat_s: float = Field(default=2.0, gt=0)
    commit_interval_s: float = Field(default=2.8, gt=0, description="how often faust commits offsets")
    restart_backoff_s: float = Field(default=1.0, gt=0, description="first wait before a restart; doubles")
    restart_backoff_max_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _check_output(self) -> StreamSettings:
        if self.output is not None and self.output_dir is not None:
            raise ValueError("output and output_dir are two forms of one setting: give output only")
        if self.output is not None:
            if "{partition}" not in self.output:
                raise ValueError(
                    f"output {self.output!r} needs {{partition}}: each window is a partition of its own"
                )
            if "://" in self.output or self.output.startswith("file:"):
                raise ValueError(
                    f"output {self.output!r}: the stream worker writes windows to a local or mounted "
                    "folder, a path without a scheme"
                )
        return self

    def window_template(self, dataset: str, job: str, run_folder: Path) -> str:
        """Each window's folder, absolute, with `{partition}` left for the worker to fill."""
        if self.output is not None:
            template = self.output.replace("{dataset}", dataset).replace("{job}", job)
            base = self.folder()
        elif self.output_dir is not None:
            template, base = f"{self.output_dir}/{dataset}/{{partition}}", self.folder()
        else:
            template, base = f"windows/{dataset}/{{partition}}", run_folder
        path = Path(template)
        return str(path if path.is_absolute() else (base / path).resolve())

    def output_problems(self, outputs: Iterable[str]) -> list[tuple[int, str]]:
        """A stream job has one output, the dataset of its hourly windows (spec checks call this)."""
        names = list(outputs)
        if not names:
            return [(0, "a stream job needs one output: the hourly dataset its windows become")]
        return [
            (i, f"a stream job has one output, its windows' dataset; {o!r} is another")
            for i, o in enumerate(names)
            if i > 0
        ]

    def interpreter(self) -> Path:
        if self.python is None:
            return DEFAULT_PYTHON
        path = Path(self.python)
        return path if path.is_absolute() else self.folder() / path

    def interpreter_problem(self) -> str | None:
        """Why the worker cannot start here (None: its interpreter is present)."""
        path = self.interpreter()
        if path.exists():
            return None
        if self.python is None:
            return f"the stream worker's interpreter {path} is missing; create it with `{MAKE_PYTHON}`"
        return f"the stream worker's interpreter {path} (settings.python) is missing"
