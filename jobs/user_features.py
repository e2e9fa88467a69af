"""Daily user features: the table a churn model scores, from a day's users and product events.

Inputs (named by the last part of the dataset name): `users`, the day's users, and `events`, the
day's product events — in the example journey the reporting tables dbt builds from what dlt
loaded (examples/website_scores/dbt: one Parquet file a day), or any tables of those columns.
The 7-, 30- and 90-day windows also read the earlier days of the events table when they sit
next to the given one as `date=YYYY-MM-DD` folders or files in such folders (a missing earlier
day counts as no activity; the example journey builds its days in order, so the earlier ones are
there). Output: one row per user, written by overwriting the output partition, so running a day
twice gives the same table.

    user_id  feature_date  country  plan  tenure_days  days_since_last_visit  sessions_7d
    sessions_30d  page_views_7d  purchases_30d  revenue_30d  avg_session_minutes  support_tickets_90d

The names are the example churn model's features (models/churn.py). `days_since_last_visit`
is capped at the look-back (90 days, or the tenure when shorter); `avg_session_minutes` is over
the last 30 days (0 without sessions).
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from coordinator.sparkjob import argument_parser, parse_args, report_dataframe, session

# .../events/date=2025-06-03, or a file in it: .../events/date=2025-06-03/events.parquet
DAY_FOLDER = re.compile(r"^(?P<parent>.+)/(?P<key>\w+)=(?P<day>\d{4}-\d{2}-\d{2})(?P<file>/[^/]+\.\w+)?/?$")
EVENT_COLUMNS = ("user_id", "event_type", "event_time", "session_id", "amount")


def event_locations(spark: SparkSession, locations: list[str], day: date, lookback_days: int) -> list[str]:
    """The given locations, plus the existing sibling days (folders, or the same file in each
    day's folder) inside the look-back window."""
    if len(locations) != 1 or not (m := DAY_FOLDER.match(locations[0])):
        return locations
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    found = []
    for back in range(lookback_days - 1, 0, -1):
        path = f"{m['parent']}/{m['key']}={(day - timedelta(days=back)).isoformat()}{m['file'] or ''}"
        jpath = jvm.org.apache.hadoop.fs.Path(path)
        if jpath.getFileSystem(conf).exists(jpath):
            found.append(path)
    return [*found, locations[0]]


def build(users: DataFrame, events: DataFrame, day: date, lookback_days: int = 90) -> DataFrame:
    d = F.lit(day.isoformat()).cast("date")
    ev = (events.select(*EVENT_COLUMNS)
          .withColumn("event_day", F.to_date("event_time"))
          .where((F.col("event_day") <= d) & (F.col("event_day") > F.date_sub(d, lookback_days)))
          .withColumn("age", F.datediff(d, F.col("event_day"))))
    in7, in30 = F.col("age") < 7, F.col("age") < 30
    kind = F.col("event_type")
    is_session = kind == "session_start"
    activity = ev.groupBy("user_id").agg(
        F.count(F.when(is_session & in7, True)).alias("sessions_7d"),
        F.count(F.when(is_session & in30, True)).alias("sessions_30d"),
        F.count(F.when((kind == "page_view") & in7, True)).alias("page_views_7d"),
        F.count(F.when((kind == "purchase") & in30, True)).alias("purchases_30d"),
        F.sum(F.when((kind == "purchase") & in30, F.col("amount"))).alias("revenue_30d"),
        F.count(F.when(kind == "support_ticket", True)).alias("support_tickets_90d"),
        F.max(F.when(kind != "support_ticket", F.col("event_day"))).alias("last_visit"),
    )
    sessions = (ev.where(in30 & F.col("session_id").isNotNull() & (kind != "support_ticket"))
                .groupBy("user_id", "session_id")
                .agg(((F.max("event_time").cast("double") - F.min("event_time").cast("double")) / 60.0)
                     .alias("minutes"))
                .groupBy("user_id").agg(F.avg("minutes").alias("avg_session_minutes")))
    u = users.select("user_id", "country", "plan", "signup_date").dropDuplicates(["user_id"])
    tenure = F.greatest(F.datediff(d, F.col("signup_date")), F.lit(0))
    out = (u.join(activity, "user_id", "left").join(sessions, "user_id", "left")
           .select(
               F.col("user_id").cast("bigint").alias("user_id"),
               d.alias("feature_date"),
               "country", "plan",
               tenure.cast("int").alias("tenure_days"),
               F.coalesce(F.datediff(d, F.col("last_visit")), F.least(tenure, F.lit(lookback_days)))
               .cast("int").alias("days_since_last_visit"),
               *[F.coalesce(F.col(c), F.lit(0)).cast("bigint").alias(c)
                 for c in ("sessions_7d", "sessions_30d", "page_views_7d", "purchases_30d")],
               *[F.round(F.coalesce(F.col(c), F.lit(0.0)), 2).cast("double").alias(c)
                 for c in ("revenue_30d", "avg_session_minutes")],
               F.coalesce(F.col("support_tickets_90d"), F.lit(0)).cast("bigint").alias("support_tickets_90d"),
           ))
    return out.orderBy("user_id")


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--lookback-days", type=int, default=90)
    parser.add_argument("--format", default="parquet", help="input and output format")
    args = parse_args(parser, argv)
    if args.partition is None:
        parser.error("--partition is required (a day, YYYY-MM-DD)")
    day = date.fromisoformat(args.partition[:10])
    opts = args.options
    spark = session(f"user_features {day}", {"spark.sql.session.timeZone": "UTC"})
    users = spark.read.format(opts.format).load(args.input("users"))
    events = spark.read.format(opts.format).load(
        event_locations(spark, args.input_locations("events"), day, opts.lookback_days))
    dataset, location = args.output()
    features = build(users, events, day, opts.lookback_days)
    features.coalesce(1).write.mode("overwrite").format(opts.format).save(location)
    report_dataframe(location, dataset, spark=spark, fmt=opts.format)
    spark.stop()


if __name__ == "__main__":
    main()
