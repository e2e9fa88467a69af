"""Hourly to daily: sums the hourly partitions of one input into one daily partition.

The spec maps the daily output to a window of the input's hourly partitions, so the launcher
passes one `--input DATASET=LOCATION` per hour; the job runs only once all of them are complete.
Rows are grouped by `--keys` and the `--sums` columns are added up; `hours_active` counts the
hourly partitions a key appears in. `--expect-partitions 24` makes a short window an error
instead of a quietly smaller day. The output partition is overwritten (idempotent).
"""

from __future__ import annotations

from pyspark.sql import functions as F

from coordinator.sparkjob import JobArgumentError, argument_parser, parse_args, report_dataframe, session


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--input-name", default=None, help="which input to read (default: the only one)")
    parser.add_argument("--keys", type=_names, default=["user_id", "event_type"])
    parser.add_argument("--sums", type=_names, default=["events"])
    parser.add_argument("--expect-partitions", type=int, default=None)
    parser.add_argument("--format", default="parquet")
    args = parse_args(parser, argv)
    opts = args.options
    name = opts.input_name or (args.inputs[0][0] if args.inputs else "input")
    locations = args.input_locations(name)
    if opts.expect_partitions is not None and len(set(locations)) != opts.expect_partitions:
        raise JobArgumentError(f"expected {opts.expect_partitions} hourly partitions of {name}, "
                               f"got {len(set(locations))}")
    spark = session(f"hourly_to_daily {args.partition}")
    hourly = (spark.read.format(opts.format).load(sorted(set(locations)))
              .withColumn("_source", F.regexp_extract(F.input_file_name(), r"^(.*)/[^/]*$", 1)))
    daily = (hourly.groupBy(*opts.keys)
             .agg(*[F.sum(c).cast("bigint").alias(c) for c in opts.sums],
                  F.countDistinct("_source").cast("int").alias("hours_active"))
             .orderBy(*opts.keys))
    dataset, location = args.output()
    daily.coalesce(1).write.mode("overwrite").format(opts.format).save(location)
    report_dataframe(location, dataset, spark=spark, fmt=opts.format,
                     attributes={"hourly_partitions": str(len(set(locations)))})
    spark.stop()


if __name__ == "__main__":
    main()
