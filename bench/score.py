"""Scoring throughput: the in-process scorer and the Spark path against the model's own predict.

    .venv/bin/python bench/score.py                      # 1,000,000 rows, 3 rounds
    .venv/bin/python bench/score.py --rows 200000 --no-spark

In one run, on the same Parquet input (the churn model's reporting table, generated):
- predict: the model's own predict_proba on the rows already in memory as a DataFrame (no I/O);
- inprocess: coordinator.scoring.inprocess.score_parquet end to end — read Parquet, cast, predict,
  write the scores table — with the model already loaded (loading is paid once per run, shown apart);
- pyfunc: the same scorer forced through MLflow's pyfunc wrapper instead of the estimator;
- spark: coordinator.scoring.spark.score_spark on a local SparkSession (spark_udf set-up included,
  session start-up excluded and shown apart).
predict and inprocess alternate for --repeats rounds; rates are medians over rounds, and the
ratio (inprocess / predict) is the median of the per-round ratios, so a noisy neighbour on the
machine hits both sides of each ratio alike. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402

from coordinator.scoring import inprocess, model  # noqa: E402
from coordinator.scoring.resolve import resolve  # noqa: E402
from models import churn  # noqa: E402


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=inprocess.DEFAULT_BATCH_ROWS)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--max-iter", type=int, default=100, help="boosting rounds of the benchmarked model")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--no-spark", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        folder = Path(tmp)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        churn.ensure_champion(uri, rows=args.train_rows, max_iter=args.max_iter)
        source = folder / "user_features"
        source.mkdir()
        pq.write_table(
            churn.generate_features(args.rows, seed=11), source / "part-0.parquet", row_group_size=131_072
        )

        resolved = resolve("models:/churn@champion", uri)
        load_s, loaded = timed(model.load, resolved, uri)
        through_pyfunc = model.load(resolved, uri, direct=False)
        frame = pq.read_table(source, columns=[f.name for f in loaded.features]).to_pandas()
        print(
            f"{args.rows:,} rows; model {resolved.uri} loaded in {load_s:.2f} s ({loaded.path} path); "
            f"load average {load_before:.1f}",
            flush=True,
        )

        predict_s, inprocess_s = [], []
        for round_ in range(args.repeats):
            seconds, _ = timed(loaded.predict, frame)
            predict_s.append(seconds)
            seconds, summary = timed(
                inprocess.score_parquet,
                loaded,
                str(source),
                str(folder / "scores"),
                ["user_id"],
                batch_rows=args.batch_rows,
            )
            assert summary.row_count == args.rows
            inprocess_s.append(seconds)
            print(
                f"round {round_ + 1}: predict {args.rows / predict_s[-1]:,.0f} rows/s, "
                f"in-process {args.rows / inprocess_s[-1]:,.0f} rows/s",
                flush=True,
            )
        pyfunc_s, _ = timed(
            inprocess.score_parquet,
            through_pyfunc,
            str(source),
            str(folder / "scores_pyfunc"),
            ["user_id"],
            batch_rows=args.batch_rows,
        )
        print(f"in-process through pyfunc: {args.rows / pyfunc_s:,.0f} rows/s", flush=True)

        spark_rate = None
        if not args.no_spark:
            spark_rate = bench_spark(args, uri, resolved, source, folder)

    predict_rate = args.rows / statistics.median(predict_s)
    inprocess_rate = args.rows / statistics.median(inprocess_s)
    # The ratio is taken per round (the two measurements sit seconds apart) and its median
    # reported: on a shared machine the load swings between rounds more than within one.
    ratio = statistics.median(p / i for p, i in zip(predict_s, inprocess_s, strict=True))
    result = {
        "rows": args.rows,
        "repeats": args.repeats,
        "inprocess_rows_per_s": round(inprocess_rate),
        "spark_rows_per_s": None if spark_rate is None else round(spark_rate),
        "predict_rows_per_s": round(predict_rate),
        "ratio": round(ratio, 3),
        "ratio_per_round": [round(p / i, 3) for p, i in zip(predict_s, inprocess_s, strict=True)],
        "pyfunc_inprocess_rows_per_s": round(args.rows / pyfunc_s),
        "model_load_s": round(load_s, 2),
        "load_average": round(load_before, 1),
    }
    print(json.dumps(result))
    return 0


def bench_spark(args: argparse.Namespace, uri: str, resolved, source: Path, folder: Path) -> float:
    from pyspark.sql import SparkSession

    from coordinator.scoring.spark import score_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    start_s, session = timed(
        lambda: (
            SparkSession.builder.master(args.spark_master)
            .appName("bench-score")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.driver.memory", "2g")
            .getOrCreate()
        )
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        shape = model.describe(resolved, uri)
        seconds, summary = timed(
            score_spark, session, shape, uri, str(source), str(folder / "scores_spark"), ["user_id"]
        )
        assert summary.row_count == args.rows
    finally:
        session.stop()
    rate = args.rows / seconds
    print(
        f"spark ({args.spark_master}): {rate:,.0f} rows/s (session start-up {start_s:.1f} s, not counted)",
        flush=True,
    )
    return rate


if __name__ == "__main__":
    sys.exit(main())
