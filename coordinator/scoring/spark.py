"""Score a Parquet table on a SparkSession with mlflow.pyfunc.spark_udf, for tables past one machine.

Same checks, same output layout as the in-process scorer: the DataFrame's schema goes through
the same plan (converted to Arrow), the features are cast to the signature's types, and the
written table has the key columns, the model's outputs, model name, version and scored_at.
spark_udf ships the model to the executors and runs it through pyfunc in Arrow batches.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from coordinator.errors import ScoringError
from coordinator.scoring import output
from coordinator.scoring.inprocess import ScoreSummary, make_plan
from coordinator.scoring.model import ModelShape, using_store

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _is_local(location: str) -> bool:
    return location.startswith("file:") or "://" not in location


def score_spark(
    spark: SparkSession,
    model: ModelShape,
    tracking_uri: str,
    source: str,
    dest: str,
    key_columns: Sequence[str],
    *,
    scored_at: datetime | None = None,
) -> ScoreSummary:
    """Score `source` (Parquet) into `dest` (Parquet folder, replaced). Raises SignatureMismatch
    before any work when the input does not fit, ScoringError when Spark or MLflow fail."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type, to_arrow_schema
    from pyspark.sql.types import ArrayType

    started = time.perf_counter()
    scored_at = scored_at or datetime.now(UTC)
    try:
        frame = spark.read.parquet(source)
    except (PySparkException, Py4JError) as exc:
        raise ScoringError(f"cannot read Parquet input {source}: {exc}") from exc
    plan = make_plan(to_arrow_schema(frame.schema), model, key_columns)

    predictions = model.predictions
    element_types = {p.type for p in predictions}
    if len(element_types) != 1:
        raise ScoringError("the Spark scorer needs model outputs of one type; use the in-process engine")
    element = from_arrow_type(predictions[0].type)
    result_type = element if len(predictions) == 1 else ArrayType(element)
    try:
        with using_store(tracking_uri):
            udf = mlflow.pyfunc.spark_udf(
                spark, model.resolved.uri, result_type=result_type, env_manager="local"
            )
    except MlflowException as exc:
        raise ScoringError(f"cannot load {model.resolved.uri} for Spark: {exc.message}") from exc

    features = F.struct(*[F.col(f.name).cast(from_arrow_type(f.type)).alias(f.name) for f in plan.features])
    scored = frame.select(*[F.col(k) for k in plan.keys], udf(features).alias("_scores"))
    if len(predictions) == 1:
        outputs = [F.col("_scores").alias(predictions[0].name)]
    else:
        outputs = [F.col("_scores")[i].alias(p.name) for i, p in enumerate(predictions)]
    table = scored.select(
        *[F.col(k) for k in plan.keys],
        *outputs,
        F.lit(model.resolved.name).alias(output.MODEL_NAME),
        F.lit(int(model.resolved.version)).cast("bigint").alias(output.MODEL_VERSION),
        F.lit(scored_at).cast("timestamp").alias(output.SCORED_AT),
    )
    # Parquet's TIMESTAMP_MICROS (UTC-adjusted) reads back as timestamp[us, UTC] everywhere;
    # Spark's default INT96 does not.
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    try:
        if _is_local(dest):
            dest_path = output.local_path(dest).absolute()
            dest_path.parent.mkdir(parents=True, exist_ok=True)
            with output.FolderSwap(dest_path) as staging:
                table.write.mode("overwrite").parquet(str(staging))
            location = str(dest_path)
            rows = output.parquet_rows(dest_path)  # from the footers, no second Spark job
        else:
            table.write.mode("overwrite").parquet(dest)
            location = dest
            rows = spark.read.parquet(location).count()
    except (PySparkException, Py4JError) as exc:
        raise ScoringError(f"scoring on Spark failed: {str(exc).splitlines()[0]}") from exc
    return ScoreSummary(location, rows, plan.scores, "spark", time.perf_counter() - started)
