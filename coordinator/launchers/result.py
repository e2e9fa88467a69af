"""The result protocol: how a launched job tells the coordinator what it produced.

The launcher sets COORD_RESULT_FILE in the job's environment; the job (through
`report_output`, or by writing the JSON itself) appends one line per output:
    {"dataset": ..., "location": ..., "row_count": ..., "columns": [{"name", "type", "nullable"}],
     "attributes": {...}}
and optionally {"details": {...}} lines (model version, push counts). The launcher reads the
file when the job ends; the engine puts the outputs into the output completion events.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from coordinator.events import Column
from coordinator.launchers.base import OutputReport

RESULT_FILE_ENV = "COORD_RESULT_FILE"


def _column_dict(c: Column | Mapping[str, object] | tuple[str, str]) -> dict[str, object]:
    if isinstance(c, Column):
        return c.model_dump()
    if isinstance(c, tuple):
        return {"name": c[0], "type": c[1], "nullable": True}
    return {"name": c["name"], "type": c["type"], "nullable": bool(c.get("nullable", True))}


def report_output(
    dataset: str,
    *,
    location: str | None = None,
    row_count: int | None = None,
    columns: Iterable[Column | Mapping[str, object] | tuple[str, str]] | None = None,
    attributes: Mapping[str, str] | None = None,
    result_file: str | None = None,
) -> None:
    """Tell the coordinator what this job wrote for `dataset`. A no-op outside a coordinator run."""
    path = result_file or os.environ.get(RESULT_FILE_ENV)
    if not path:
        return
    line = {
        "dataset": dataset,
        "location": location,
        "row_count": row_count,
        "columns": None if columns is None else [_column_dict(c) for c in columns],
        "attributes": dict(attributes or {}),
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def report_details(details: Mapping[str, object], result_file: str | None = None) -> None:
    path = result_file or os.environ.get(RESULT_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"details": dict(details)}) + "\n")


def read_results(path: Path) -> tuple[tuple[OutputReport, ...], dict[str, object]]:
    """Outputs and merged details from a result file; a missing file means nothing reported."""
    outputs: list[OutputReport] = []
    details: dict[str, object] = {}
    if not path.exists():
        return (), details
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        item = json.loads(raw)
        if "details" in item:
            details.update(item["details"])
            continue
        cols = item.get("columns")
        outputs.append(
            OutputReport(
                dataset=item["dataset"],
                location=item.get("location"),
                row_count=item.get("row_count"),
                columns=None if cols is None else tuple(Column(**c) for c in cols),
                attributes=item.get("attributes") or {},
            )
        )
    return tuple(outputs), details
