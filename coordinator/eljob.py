"""The child side of the `el` kind: one dlt pipeline run for one partition, reported table by table.

Started by launchers/el.py as `python -m coordinator.eljob` with the job's settings (JSON) in
COORD_EL_SETTINGS. It imports the project's `module:function`, calls it with the partition and
its window (the keywords `partition`, `window_start`, `window_end`, each only when the function
takes it or **kwargs), and runs the dlt pipeline it returns into the destination. Then, through
the result protocol (launchers/result.py), one output per declared table:
- the row count of this load, from `last_trace.last_normalize_info.row_counts`;
- the columns and types from the pipeline's `default_schema`, named as the project's Spark jobs
  name theirs (string, bigint, double, boolean, timestamp, decimal(p,s)...), so one contract
  reads the same whichever step produced the data. A value of another type than its column's
  (dlt keeps it in a variant column such as `amount__v_text`) makes the column's type
  `variant(bigint,string)`: a contract saying `bigint` blocks, naming the column, instead of a
  downstream job reading NULLs where the text values went.
dlt's own tables (_dlt_loads, _dlt_pipeline_state, _dlt_version) are never reported.

The pipeline's working folder belongs to this run (inside the run's folder): dlt restores its
state and schema from the destination, so no load package left pending by another attempt or
another partition is ever loaded under this run's name, and two partitions never share one
working folder. On failure the one line that says why — a failed load job's own error (the last
line of its message) or the step's exception — is the run's cause (details `error`).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from coordinator.events import Column
from coordinator.kinds.el import ElSettings, source_parts
from coordinator.launchers.child import Refused, child_args, finish, one_line
from coordinator.launchers.result import exit_child, report_details, report_output
from coordinator.spec.partitions import window

SETTINGS_ENV = "COORD_EL_SETTINGS"
_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b[^:]*:")
_SIMPLE = {
    "text": "string",
    "double": "double",
    "bool": "boolean",
    "timestamp": "timestamp",
    "date": "date",
    "time": "time",
    "binary": "binary",
    "json": "json",
    "wei": "decimal(38,0)",
}
_INT_BITS = {8: "tinyint", 16: "smallint", 32: "int"}


def column_type(column: Mapping[str, Any]) -> str:
    """dlt's data type of a column as the project's Spark-style type name."""
    data_type = str(column["data_type"])
    if data_type == "bigint":
        return _INT_BITS.get(column.get("precision") or 64, "bigint")
    if data_type == "decimal":
        precision, scale = column.get("precision"), column.get("scale")
        return f"decimal({precision},{scale or 0})" if precision else "decimal"
    return _SIMPLE.get(data_type, data_type)


def table_columns(table: Mapping[str, Any]) -> tuple[Column, ...]:
    """The table's columns (those with a known type), a column with variants typed variant(...)."""
    columns = {n: c for n, c in (table.get("columns") or {}).items() if c.get("data_type")}
    variants: dict[str, list[str]] = {}
    for name, col in columns.items():
        base = name.rsplit("__v_", 1)[0]
        if col.get("variant") and base != name and base in columns:
            variants.setdefault(base, []).append(column_type(col))
    out = []
    for name, col in columns.items():
        kind = column_type(col)
        if name in variants:
            kind = f"variant({','.join(dict.fromkeys([kind, *variants[name]]))})"
        out.append(Column(name=name, type=kind, nullable=bool(col.get("nullable", True))))
    return tuple(out)


def source_object(settings: ElSettings, partition: str | None) -> Any:
    """Import the project's function and call it with what it takes of the run's partition."""
    module_name, function_name = source_parts(settings.source)
    sys.path.insert(0, str(settings.project()))
    try:
        module = __import__(module_name, fromlist=[function_name])
    except Exception as exc:
        raise Refused(f"cannot import {module_name}: {type(exc).__name__}: {one_line(str(exc))}") from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise Refused(f"{settings.source}: {module_name} has no function {function_name}")
    bounds = window(partition)
    start, end = bounds or (None, None)
    offered = {"partition": partition, "window_start": start, "window_end": end}
    params = inspect.signature(function).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = {k: v for k, v in offered.items() if takes_all or k in params}
    if partition is not None and "partition" not in given and "window_start" not in given:
        print(
            f"note: {settings.source} takes neither partition nor window_start: "
            f"it loads the same whatever the partition ({partition})",
            file=sys.stderr,
        )
    try:
        return function(**given, **settings.args)
    except Exception as exc:
        raise Refused(f"{settings.source} raised {type(exc).__name__}: {one_line(str(exc))}") from exc


def destination(settings: ElSettings, partition: str | None) -> tuple[Any, str]:
    """(the dlt destination, the location prefix of its tables)."""
    import dlt

    dest = settings.destination
    if dest.type == "duckdb":
        path = settings.resolved(dest.path or "")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(path), f"duckdb://{path}#"
    if dest.type == "filesystem":
        bucket = settings.resolved(dest.path or "")
        options: dict[str, Any] = {"extra_placeholders": {"partition": partition or "none"}}
        if dest.layout:
            options["layout"] = dest.layout
        return dlt.destinations.filesystem(bucket_url=bucket, **options), bucket.rstrip("/") + "/"
    url = dest.url or ""
    if dest.password is not None:
        scheme, rest = url.split("://", 1)
        auth, host = rest.rsplit("@", 1) if "@" in rest else ("", rest)
        user = auth.split(":", 1)[0]
        url = f"{scheme}://{user}:{quote(dest.password.get_secret_value(), safe='')}@{host}"
    shown = url.split("://", 1)[0] + "://" + url.rsplit("@", 1)[-1]
    return dlt.destinations.postgres(credentials=url), f"{shown}#"


def location(settings: ElSettings, prefix: str, table: str, partition: str | None) -> str:
    if settings.destination.type != "filesystem":
        return f"{prefix}{settings.dataset_name}.{table}"
    folder = f"{prefix}{settings.dataset_name}/{table}"
    layout = settings.destination.layout or ""
    if "{partition}" in layout:  # the partition's own folder: what this load wrote
        head = layout.split("{partition}", 1)[0].replace("{table_name}", table)
        folder = f"{prefix}{settings.dataset_name}/{head}{partition or 'none'}"
    return folder


def failure_line(exc: BaseException) -> str:
    """The one line that says why a pipeline run failed: a failed load job's own error, else the
    failed step's exception."""
    from dlt.pipeline.exceptions import PipelineStepFailed

    if not isinstance(exc, PipelineStepFailed):
        return f"{type(exc).__name__}: {one_line(str(exc))}"
    inner = exc.exception
    message = getattr(inner, "failed_message", None)
    if message:
        lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
        # the job's message is a traceback: its last exception, with the lines that continue it
        last = max((i for i, ln in enumerate(lines) if _RAISED.match(ln)), default=len(lines) - 1)
        table = str(getattr(inner, "job_id", "") or "?").split(".")[0]
        package = getattr(inner, "load_id", None) or exc.load_id
        return (
            f"dlt load of table {table} failed (load package {package}): {one_line(' '.join(lines[last:]))}"
        )
    return f"dlt {exc.step} failed: {type(inner).__name__}: {one_line(str(inner))}"


def run(settings: ElSettings, job: str, partition: str | None, outputs: list[str], workdir: Path) -> None:
    import dlt

    dest, prefix = destination(settings, partition)
    source = source_object(settings, partition)
    pipeline = dlt.pipeline(
        pipeline_name=settings.pipeline_name or f"coord_{job}",
        pipelines_dir=str(workdir),
        destination=dest,
        dataset_name=settings.dataset_name,
    )
    options: dict[str, Any] = {}
    if settings.write_disposition:
        options["write_disposition"] = settings.write_disposition
    if settings.destination.type == "filesystem":
        options["loader_file_format"] = settings.destination.format
    try:
        pipeline.run(source, **options)
    except Exception as exc:
        raise Refused(failure_line(exc)) from exc
    counts = pipeline.last_trace.last_normalize_info.row_counts
    schema = pipeline.default_schema
    tables = {t: schema.tables[t] for t in schema.data_table_names()}
    by_dataset = {settings.dataset_of(t): t for t in tables}
    missing = [o for o in outputs if o not in by_dataset]
    if missing:
        known = ", ".join(f"{t} → {settings.dataset_of(t)}" for t in tables) or "none"
        raise Refused(
            f"outputs {', '.join(missing)} are no table the source loaded (tables: {known}); "
            "name them in `tables` or fix the job's outputs"
        )
    for dataset in outputs:
        table = by_dataset[dataset]
        rows = int(counts.get(table, 0))
        report_output(
            dataset,
            location=location(settings, prefix, table, partition),
            row_count=rows,
            columns=table_columns(tables[table]),
            attributes={
                "dlt_table": table,
                "dlt_pipeline": pipeline.pipeline_name,
                "dlt_dataset": settings.dataset_name,
            },
        )
        print(f"loaded {table} as {dataset}: {rows} row(s)")
    for table in sorted(set(tables) - {by_dataset[o] for o in outputs}):
        if counts.get(table):
            print(f"note: table {table} ({counts[table]} row(s)) is not an output of job {job}: no event")
    report_details({"row_counts": {t: int(n) for t, n in counts.items() if t in tables}})


def main(argv: list[str] | None = None) -> int:
    args = child_args("coordinator.eljob").parse_args(argv)
    settings = ElSettings.model_validate(json.loads(os.environ[SETTINGS_ENV]))
    return finish(lambda: run(settings, args.job, args.partition, args.output, args.workdir / "dlt"))


if __name__ == "__main__":
    exit_child(main())
