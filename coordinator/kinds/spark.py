"""The `spark` kind's settings, and the checks spark-submit would make, said when the spec loads.

    settings:
      application: jobs.user_features      # a .py/.jar file, a URI, or a module
      conf: {spark.sql.shuffle.partitions: "8"}
      output: lake/features/date={partition}
      deploy_mode: client                  # or cluster (a cluster master, a JVM app on standalone)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from coordinator.kinds.base import SpecRelative

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MEMORY = r"^\d+[kKmMgGtT]?[bB]?$"


def _has_scheme(location: str) -> bool:
    head = location.split("/", 1)[0]
    return head.endswith(":") and len(head) > 2  # s3a:, hdfs:, file:, local: — not C:


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


def resolve_application(application: str, base_dir: Path) -> str:
    """A path (relative to `base_dir`) or URI is kept; a module (`jobs.x` or `x`) becomes its file."""
    if _has_scheme(application):
        return application
    if application.endswith((".py", ".jar", ".zip")) or "/" in application:
        path = (base_dir / application).resolve()
        if not path.is_file():
            raise ValueError(f"application {application!r} not found (looked at {path})")
        return str(path)
    for name in (application, f"jobs.{application}"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            return spec.origin
    fallback = PROJECT_ROOT / "jobs" / f"{application.removeprefix('jobs.')}.py"
    if fallback.is_file():
        return str(fallback)
    raise ValueError(f"application {application!r} is neither a file nor a module (nor one in jobs/)")


class SparkSettings(SpecRelative):
    """The `settings:` block of a `kind: spark` job. Paths are relative to the spec file's folder."""

    application: str = Field(description="a .py/.jar file, a URI, or a module (jobs.user_features)")
    main_class: str | None = Field(default=None, description="--class of a JVM application")
    args: tuple[str, ...] = Field(
        default=(),
        description="the job's own arguments; {partition}, {job}, "
        "{run_id}, {attempt} and {workdir} are replaced",
    )
    py_files: tuple[str, ...] = ()
    packages: tuple[str, ...] = Field(default=(), description="Maven coordinates for --packages")
    jars: tuple[str, ...] = ()
    conf: dict[str, str] = Field(default_factory=dict)
    driver_memory: str | None = Field(default=None, pattern=MEMORY)
    executor_memory: str | None = Field(default=None, pattern=MEMORY)
    master: str | None = Field(default=None, description="overrides the coordinator's spark_master")
    deploy_mode: Literal["client", "cluster"] = "client"
    rest_url: str | None = Field(
        default=None,
        description="standalone master REST server (cluster mode); default: the master's host on port 6066",
    )
    output: str | dict[str, str] | None = Field(
        default=None,
        description="output location template with {partition} (and {dataset}, {job}); "
        "a mapping gives one template per output dataset",
    )
    name: str | None = Field(default=None, description="application name; default coord:<job>:<partition>")

    @field_validator("args", mode="before")
    @classmethod
    def _args_as_text(cls, value: Any) -> Any:
        return [_text(v) for v in value] if isinstance(value, list | tuple) else value

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_as_text(cls, value: Any) -> Any:
        """YAML gives `spark.sql.shuffle.partitions: 8` an int and `...enabled: false` a bool."""
        return {k: _text(v) for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _check(self) -> SparkSettings:
        resolve_application(self.application, self.folder())
        if self.deploy_mode == "cluster" and self.master:
            check_cluster_mode(self.master, self.application)
        return self

    def location(self, template: str) -> str:
        return template if _has_scheme(template) else str((self.folder() / template).resolve())

    def output_location(self, dataset: str, job: str, partition: str | None) -> str | None:
        template = self.output.get(dataset) if isinstance(self.output, dict) else self.output
        if template is None:
            return None
        for name, value in (("partition", partition or ""), ("dataset", dataset), ("job", job)):
            template = template.replace("{" + name + "}", value)
        return self.location(template)


def check_cluster_mode(master: str, application: str) -> None:
    """What spark-submit would refuse, said when the spec loads instead of at the first run."""
    if master.startswith("local"):
        raise ValueError(f"deploy_mode cluster needs a cluster master, not {master}")
    if master.startswith("spark://") and not application.endswith(".jar") and not _has_scheme(application):
        raise ValueError(
            "a standalone master runs only JVM applications in cluster mode; "
            "use deploy_mode client for a Python application"
        )
