"""The `el` kind's settings: a dlt source of the user's project loaded into a destination.

    settings:
      source: shop_sources:orders          # module:function in the project, returns a dlt source/resource
      project_dir: .                       # put on the import path; dlt's .dlt/ config is read here
      args: {api_base: "http://..."}       # more keyword arguments for the function
      destination: {type: duckdb, path: lake/raw.duckdb}
        # or {type: filesystem, path: lake/raw, format: parquet,
        #     layout: "{table_name}/{partition}/{load_id}.{file_id}.{ext}"}
        # or {type: postgres, url: "postgresql://loader@db:5432/warehouse", password: "${PGPASSWORD}"}
      dataset_name: raw                    # dlt's dataset: the schema (or folder) tables land in
      tables: {orders: raw.orders}         # table → dataset name; default <dataset_name>.<table>
      write_disposition: replace           # overrides the source's own (append | replace | merge)

Checked when the spec loads without importing the user's code: the source's form and that its
module is a file of the project (or an installed module).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from coordinator.kinds.base import KindSettings, SpecRelative

_SOURCE = re.compile(r"^(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)$")


class ElDestination(KindSettings):
    """Where dlt loads: a DuckDB file, a folder of files (Parquet by default), or PostgreSQL."""

    type: Literal["duckdb", "filesystem", "postgres"]
    path: str | None = Field(default=None, description="duckdb: the database file; filesystem: folder or URL")
    url: str | None = Field(default=None, description="postgres: postgresql://user@host:port/database")
    password: SecretStr | None = None
    format: Literal["parquet", "jsonl", "csv"] = "parquet"
    layout: str | None = Field(default=None, description="filesystem file layout; {partition} allowed")

    @model_validator(mode="after")
    def _fits_type(self) -> ElDestination:
        needs = {"duckdb": "path", "filesystem": "path", "postgres": "url"}[self.type]
        if not getattr(self, needs):
            raise ValueError(f"a {self.type} destination needs `{needs}`")
        given = self.model_fields_set - {"type", needs}
        read_by = {"password": "postgres", "format": "filesystem", "layout": "filesystem"}
        extra = sorted(f for f in given if read_by.get(f) != self.type)
        if extra:
            raise ValueError(f"{', '.join(map(repr, extra))} has no meaning for a {self.type} destination")
        if self.type == "postgres" and not self.url.startswith(("postgresql://", "postgres://")):  # type: ignore[union-attr]
            raise ValueError("a postgres destination's url starts with postgresql://")
        return self


def source_parts(source: str) -> tuple[str, str]:
    """`module:function` → (module, function); ValueError for anything else."""
    match = _SOURCE.match(source.strip())
    if not match:
        raise ValueError(f"source {source!r} is not module:function (like shop_sources:orders)")
    return match["module"], match["function"]


def module_file(module: str, project_dir: Path) -> Path | None:
    """The file of `module` in `project_dir` (a module or a package), else None."""
    base = project_dir.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


class ElSettings(SpecRelative):
    """The `settings:` block of a `kind: el` job. Relative paths are relative to the spec's folder."""

    source: str = Field(description="module:function returning a dlt source or resource")
    project_dir: str = Field(default=".", description="the folder the source's module is imported from")
    args: dict[str, Any] = Field(default_factory=dict)
    destination: ElDestination
    dataset_name: str = Field(min_length=1, pattern=r"^[A-Za-z_][\w]*$")
    pipeline_name: str | None = Field(default=None, description="default: coord_<job>")
    tables: dict[str, str] = Field(default_factory=dict)
    write_disposition: Literal["append", "replace", "merge"] | None = None

    @model_validator(mode="after")
    def _source_found(self) -> ElSettings:
        module, _ = source_parts(self.source)
        taken = sorted(set(self.args) & {"partition", "window_start", "window_end"})
        if taken:
            raise ValueError(f"args {', '.join(taken)} are given by the coordinator for each run")
        if module_file(module, self.project()) is None and not _installed(module):
            raise ValueError(f"source module {module!r} is neither in {self.project()} nor installed")
        dest = self.destination
        if dest.type == "duckdb" and Path(dest.path or "").stem == self.dataset_name:
            raise ValueError(  # DuckDB's binder then fails every schema update: "Ambiguous reference"
                f"the DuckDB file {dest.path!r} is named like dataset_name {self.dataset_name!r}: DuckDB "
                "cannot tell its catalog from the dataset's schema; rename one"
            )
        return self

    def project(self) -> Path:
        return (self.folder() / self.project_dir).resolve()

    def resolved(self, path: str) -> str:
        """A destination path made absolute against the spec's folder (a URL is kept)."""
        return path if "://" in path else str((self.folder() / path).resolve())

    def dataset_of(self, table: str) -> str:
        return self.tables.get(table, f"{self.dataset_name}.{table}")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False
