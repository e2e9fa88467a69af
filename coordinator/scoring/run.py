"""`python -m coordinator.scoring.run`: one scoring run, as the `score` launcher starts it.

    python -m coordinator.scoring.run --model models:/churn@champion --tracking-uri sqlite:///mlflow.db \\
        --input lake/reporting/user_features/date=2024-06-01 --output lake/scores/churn/date=2024-06-01 \\
        --key-column user_id --dataset scores.churn --engine inprocess

The model reference is resolved first and the exact version is reported at once (result
file details), so even a run that fails later says which version it tried. Exit codes:
0 scored; 3 blocked (the input does not fit the model's signature: the reason names the
columns); 1 any other failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

from coordinator.errors import ScoringError, SignatureMismatch
from coordinator.launchers.result import exit_child, report_details, report_output
from coordinator.scoring import output
from coordinator.scoring.inprocess import DEFAULT_BATCH_ROWS, ScoreSummary
from coordinator.scoring.resolve import ResolvedModel, resolve

EXIT_FAILED, EXIT_BLOCKED = 1, 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m coordinator.scoring.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--input", required=True, help="Parquet file or folder")
    p.add_argument("--output", required=True, help="Parquet folder (replaced)")
    p.add_argument("--key-column", dest="key_columns", action="append", required=True)
    p.add_argument("--engine", choices=("inprocess", "spark"), default="inprocess")
    p.add_argument("--dataset", help="the output dataset to report (none: report nothing)")
    p.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS)
    p.add_argument("--spark-master", default="local[*]")
    return p


def _score(args: argparse.Namespace, resolved: ResolvedModel, scored_at: datetime) -> ScoreSummary:
    from coordinator.scoring import model

    shape = model.describe(resolved, args.tracking_uri)
    if args.engine == "spark":
        return _spark(shape, args, scored_at)
    # The signature is checked against the input's schema before the model itself is loaded:
    # a run that blocks does so in a second, not after loading a large model.
    from coordinator.scoring.inprocess import make_plan, open_dataset

    make_plan(open_dataset(args.input).schema, shape, args.key_columns)
    loaded = model.load(resolved, args.tracking_uri)
    print(f"scoring in-process through the {loaded.path} path", flush=True)
    return _inprocess(loaded, args, scored_at)


def _inprocess(loaded: object, args: argparse.Namespace, scored_at: datetime) -> ScoreSummary:
    from coordinator.scoring.inprocess import score_parquet

    return score_parquet(
        loaded, args.input, args.output, args.key_columns, scored_at=scored_at, batch_rows=args.batch_rows
    )


def _spark(shape: object, args: argparse.Namespace, scored_at: datetime) -> ScoreSummary:
    from pyspark.sql import SparkSession

    from coordinator.scoring.spark import score_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master(args.spark_master)
        .appName("coordinator-score")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        return score_spark(
            session, shape, args.tracking_uri, args.input, args.output, args.key_columns, scored_at=scored_at
        )
    finally:
        session.stop()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    scored_at = datetime.now(UTC)
    try:
        resolved = resolve(args.model, args.tracking_uri)
        model_details = {
            "model_name": resolved.name,
            "model_version": resolved.version,
            "model_uri": resolved.uri,
            "model_requested": args.model,
            "engine": args.engine,
        }
        report_details(model_details)
        print(f"resolved {args.model} to {resolved.uri}", flush=True)
        summary = _score(args, resolved, scored_at)
    except SignatureMismatch as exc:
        report_details({"blocked": True, "reason": str(exc), "mismatched_columns": exc.columns})
        print(f"blocked: {exc}", flush=True)
        return EXIT_BLOCKED
    except ScoringError as exc:
        print(f"error: {exc}", flush=True)
        return EXIT_FAILED
    if args.dataset:
        report_output(
            args.dataset,
            location=summary.location,
            row_count=summary.row_count,
            columns=output.columns_of(summary.schema),
            attributes={**{k: str(v) for k, v in model_details.items()}, "scored_at": scored_at.isoformat()},
        )
    rate = summary.row_count / summary.seconds if summary.seconds > 0 else 0.0
    report_details(
        {
            "row_count": summary.row_count,
            "seconds": round(summary.seconds, 3),
            "rows_per_s": round(rate),
            "location": summary.location,
        }
    )
    print(
        f"scored {summary.row_count} rows with {resolved.uri} into {summary.location} "
        f"in {summary.seconds:.2f} s ({rate:,.0f} rows/s)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    exit_child(main())
