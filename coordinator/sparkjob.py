"""The SDK a Spark application calls: the same arguments for every job, one call per output.

The `spark` launcher passes every application the same arguments, before the job's own:

    --partition P                  the partition being built (absent for unpartitioned outputs)
    --input DATASET=LOCATION       one per input version; a window mapping gives several per dataset
    --output DATASET=LOCATION      one per output dataset

`parse_args()` reads them (the job adds its own options to `argument_parser()` first), and
`report_dataframe(df_or_path, dataset, location)` tells the coordinator the row count and the
columns of what the job wrote; the coordinator puts them into the output completion event, which
is how downstream contracts are checked. Re-reading the written location is the recommended use:
it reports what is really on disk, and for Parquet the count comes from file footers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from coordinator.errors import JobArgumentError
from coordinator.launchers.result import RESULT_FILE_ENV, report_details, report_output

if TYPE_CHECKING:  # pyspark is imported only inside a Spark driver
    from pyspark.sql import DataFrame, SparkSession

# The launcher also passes the result file as a Spark conf: in cluster mode the driver runs on a
# worker and does not inherit the submitting process's environment.
RESULT_FILE_CONF = "spark.coord.resultFile"


def _pair(text: str) -> tuple[str, str]:
    dataset, sep, location = text.partition("=")
    if not sep or not dataset:
        raise argparse.ArgumentTypeError(f"expected DATASET=LOCATION, got {text!r}")
    return dataset, location


def argument_parser(description: str | None = None) -> argparse.ArgumentParser:
    """A parser with the coordinator's standard options; add the job's own before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--partition", default=None, help="the partition to build")
    parser.add_argument(
        "--input",
        dest="inputs",
        action="append",
        type=_pair,
        default=[],
        metavar="DATASET=LOCATION",
        help="an input version (repeatable)",
    )
    parser.add_argument(
        "--output",
        dest="outputs",
        action="append",
        type=_pair,
        default=[],
        metavar="DATASET=LOCATION",
        help="an output location (repeatable)",
    )
    return parser


def _matches(dataset: str, name: str) -> bool:
    """`users` names `fivetran.app.users`: jobs refer to inputs by the last part of the name."""
    return dataset == name or dataset.endswith("." + name)


@dataclass(frozen=True)
class JobArgs:
    partition: str | None
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]
    options: argparse.Namespace = field(default_factory=argparse.Namespace)

    def input_locations(self, name: str) -> list[str]:
        """All locations given for the input named `name` (full name or its last dotted part)."""
        found = {d for d, _ in self.inputs if _matches(d, name)}
        if not found:
            given = ", ".join(sorted({d for d, _ in self.inputs})) or "none"
            raise JobArgumentError(f"no input named {name!r} was given (inputs: {given})")
        if len(found) > 1:
            raise JobArgumentError(f"input name {name!r} is ambiguous: {', '.join(sorted(found))}")
        locations = [loc for d, loc in self.inputs if d in found]
        if not all(locations):
            raise JobArgumentError(f"input {name!r} has no location (its completion event carried none)")
        return locations

    def input(self, name: str) -> str:
        """The one location of input `name`; an error if a window gave several."""
        locations = self.input_locations(name)
        if len(locations) != 1:
            raise JobArgumentError(f"input {name!r} has {len(locations)} locations; use input_locations()")
        return locations[0]

    def output(self, name: str | None = None) -> tuple[str, str]:
        """(dataset, location) of output `name`, or of the only output when `name` is None."""
        candidates = [o for o in self.outputs if name is None or _matches(o[0], name)]
        if len(candidates) != 1:
            raise JobArgumentError(
                f"expected one output{' named ' + repr(name) if name else ''}, "
                f"got {[d for d, _ in candidates]}"
            )
        dataset, location = candidates[0]
        if not location:
            raise JobArgumentError(f"output {dataset!r} has no location (set `output` in the job's settings)")
        return dataset, location


def parse_args(parser: argparse.ArgumentParser | None = None, argv: Sequence[str] | None = None) -> JobArgs:
    ns = (parser or argument_parser()).parse_args(argv)
    inputs, outputs = tuple(ns.inputs), tuple(ns.outputs)
    partition = ns.partition
    for name in ("inputs", "outputs", "partition"):
        delattr(ns, name)
    return JobArgs(partition=partition, inputs=inputs, outputs=outputs, options=ns)


def absolute_location(location: str) -> str:
    """Local paths become absolute (the event outlives the job's working folder); URIs stay."""
    if urlsplit(location).scheme and not Path(location).drive:
        return location
    return str(Path(location).resolve())


def _result_file(spark: SparkSession | None) -> str | None:
    path = os.environ.get(RESULT_FILE_ENV)
    if path or spark is None:
        return path
    return spark.sparkContext.getConf().get(RESULT_FILE_CONF) or None


def _active_session(spark: SparkSession | None) -> SparkSession:
    from pyspark.sql import SparkSession

    session = spark or SparkSession.getActiveSession()
    if session is None:
        raise JobArgumentError("no active SparkSession; pass spark=")
    return session


def report_dataframe(
    df_or_path: DataFrame | str | os.PathLike[str],
    dataset: str,
    location: str | None = None,
    *,
    spark: SparkSession | None = None,
    fmt: str = "parquet",
    attributes: Mapping[str, str] | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Report one output: its row count and columns (from the schema) and where it is.

    `df_or_path` is a DataFrame or the path the job wrote (read back with `fmt`). Also records
    the Spark application id in the run's details. Returns (row_count, [(column, type)]).
    A no-op for the coordinator when the job runs outside a coordinator run (nothing to report to).
    """
    if isinstance(df_or_path, str | os.PathLike):
        session = _active_session(spark)
        location = location or os.fspath(df_or_path)
        df = session.read.format(fmt).load(os.fspath(df_or_path))
    else:
        df = df_or_path
        session = _active_session(spark or df.sparkSession)
    row_count = df.count()
    columns = [
        {"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable} for f in df.schema.fields
    ]
    result_file = _result_file(session)
    report_output(
        dataset,
        location=absolute_location(location) if location else None,
        row_count=row_count,
        columns=columns,
        attributes=attributes,
        result_file=result_file,
    )
    report_application(session, result_file=result_file)
    return row_count, [(str(c["name"]), str(c["type"])) for c in columns]


def session(app_name: str, conf: Mapping[str, str] | None = None) -> SparkSession:
    """The job's SparkSession (settings from spark-submit, plus `conf`); records its application id
    at once, so even a run that fails later names its application."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    report_application(spark)
    return spark


def report_application(spark: SparkSession, result_file: str | None = None) -> None:
    """Record the Spark application id in the run's details (the driver log has it too)."""
    report_details(
        {"spark_app_id": spark.sparkContext.applicationId}, result_file=result_file or _result_file(spark)
    )
