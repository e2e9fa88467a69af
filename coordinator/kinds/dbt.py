"""The `dbt` kind's settings: dbt build (by default) of a selection of a dbt project.

    settings:
      project_dir: dbt/shop                # holds dbt_project.yml; relative to the spec's folder
      profiles_dir: null                   # default: the project folder when it has profiles.yml,
                                           # else dbt's own (DBT_PROFILES_DIR, ~/.dbt)
      target: null                         # the profile's target (default: the profile's own)
      command: build                       # build | run | seed | snapshot
      select: ["+reporting.orders"]        # --select, a list or one space-separated string
      exclude: []                          # --exclude
      vars: {country: uk}                  # beside partition, window_start, window_end
      datasets: {orders: reporting.orders} # node name or unique_id → dataset; default: the
                                           # relation name (db.schema.table)
      catalog: false                       # true: columns typed by the warehouse (docs generate)

Each declared output must be a node the job selects. When the spec loads, an output that is no
node at all of the project's target/manifest.json (when dbt left one there) is an error with its
line; that it is *selected* needs dbt's own selector, so the run checks it before building
(a blocked run naming the outputs, nothing built).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from coordinator.dbt import BUILT_TYPES, relation_to_dataset
from coordinator.kinds.base import SpecRelative

RESERVED_VARS = ("partition", "window_start", "window_end")


class DbtSettings(SpecRelative):
    """The `settings:` block of a `kind: dbt` job."""

    project_dir: str = Field(description="the dbt project's folder (holds dbt_project.yml)")
    profiles_dir: str | None = Field(default=None, description="default: the project's, else dbt's own")
    target: str | None = None
    command: Literal["build", "run", "seed", "snapshot"] = "build"
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    vars: dict[str, Any] = Field(default_factory=dict)
    datasets: dict[str, str] = Field(default_factory=dict)
    catalog: bool = False
    full_refresh: bool = False
    threads: int | None = Field(default=None, ge=1)

    @field_validator("select", "exclude", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> DbtSettings:
        if not (self.project() / "dbt_project.yml").is_file():
            where = self.project()
            raise ValueError(f"project_dir {self.project_dir!r} has no dbt_project.yml (looked in {where})")
        taken = sorted(set(self.vars) & set(RESERVED_VARS))
        if taken:
            raise ValueError(f"vars {', '.join(taken)} are set by the coordinator for each run")
        return self

    def project(self) -> Path:
        return (self.folder() / self.project_dir).resolve()

    def profiles(self) -> Path | None:
        """--profiles-dir: the one given, else the project folder when it has profiles.yml, else
        None (dbt's own default: DBT_PROFILES_DIR, then ~/.dbt)."""
        if self.profiles_dir:
            return (self.folder() / self.profiles_dir).resolve()
        return self.project() if (self.project() / "profiles.yml").is_file() else None

    def dataset_of(self, node: Mapping[str, Any]) -> str | None:
        """The dataset a node's completion event is for (None for a node that builds no relation)."""
        for key in (node.get("unique_id"), node.get("name")):
            if key in self.datasets:
                return self.datasets[key]
        relation = node.get("relation_name")
        return relation_to_dataset(str(relation)) if relation else None

    def output_problems(self, outputs: Iterable[str]) -> list[tuple[int, str]]:
        """(index, why) of the outputs that are no node of the project's last manifest (none when
        dbt left no manifest there). Called by the spec's checks with the job's outputs."""
        path = self.project() / "target" / "manifest.json"
        try:
            nodes = json.loads(path.read_text()).get("nodes") or {}
        except (OSError, ValueError, AttributeError):
            return []
        known = {self.dataset_of(n) for n in nodes.values() if n.get("resource_type") in BUILT_TYPES}
        return [
            (
                i,
                f"output {o!r} is no model, seed or snapshot of the dbt project ({path}); "
                "map a node to it in `datasets`",
            )
            for i, o in enumerate(outputs)
            if o not in known
        ]
