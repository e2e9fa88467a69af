"""The scores table: key columns, one column per model output, model name, model version, scored_at.

Both engines write exactly this layout, so downstream (a reverse-ETL push, a dashboard) never
needs to know which engine ran. Output names come from the model's output signature: named
columns keep their names (the churn model says `p_stay`, `p_churn`); a single unnamed output
is `prediction`; an unnamed tensor of k values gives `prediction_0` … `prediction_{k-1}`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from coordinator.errors import ScoringError
from coordinator.events import Column
from coordinator.scoring.signature import MLFLOW_TO_ARROW

MODEL_NAME, MODEL_VERSION, SCORED_AT = "model_name", "model_version", "scored_at"
CONSTANT_COLUMNS = (MODEL_NAME, MODEL_VERSION, SCORED_AT)  # one value per run
SCORED_AT_TYPE = pa.timestamp("us", tz="UTC")
PART_FILE = "part-00000.parquet"


@dataclass(frozen=True)
class Prediction:
    name: str
    type: pa.DataType


def predictions_of(output_schema: object | None) -> tuple[Prediction, ...]:
    """The prediction columns a model's output signature promises (double `prediction` if none)."""
    if output_schema is None:
        return (Prediction("prediction", pa.float64()),)
    specs = list(output_schema.inputs)
    if output_schema.is_tensor_spec():
        spec = specs[0]
        dtype = pa.from_numpy_dtype(np.dtype(spec.type))
        width = spec.shape[1] if len(spec.shape) == 2 and spec.shape[1] > 1 else 1
        if width == 1:
            return (Prediction("prediction", dtype),)
        return tuple(Prediction(f"prediction_{i}", dtype) for i in range(width))
    out = []
    for i, spec in enumerate(specs):
        arrow_type = MLFLOW_TO_ARROW.get(getattr(spec.type, "name", ""))
        if arrow_type is None:
            raise ScoringError(
                f"model output {spec.name or i} has type {spec.type}, which a table cannot hold"
            )
        name = spec.name or ("prediction" if len(specs) == 1 else f"prediction_{i}")
        out.append(Prediction(name, arrow_type))
    return tuple(out)


def scores_schema(keys: list[pa.Field], predictions: tuple[Prediction, ...]) -> pa.Schema:
    taken = {f.name for f in keys}
    taken |= set(CONSTANT_COLUMNS)
    clash = [p.name for p in predictions if p.name in taken]
    if clash:
        raise ScoringError(f"prediction column(s) {', '.join(clash)} clash with key or bookkeeping columns")
    return pa.schema(
        [
            *keys,
            *(pa.field(p.name, p.type) for p in predictions),
            pa.field(MODEL_NAME, pa.string()),
            pa.field(MODEL_VERSION, pa.int64()),
            pa.field(SCORED_AT, SCORED_AT_TYPE),
        ]
    )


def prediction_arrays(result: object, predictions: tuple[Prediction, ...], rows: int) -> list[pa.Array]:
    """Split a model's output (ndarray 1-D/2-D, DataFrame, Series, list) into typed Arrow arrays."""
    values = result.to_numpy() if hasattr(result, "to_numpy") else np.asarray(result)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    if values.ndim != 2 or values.shape != (rows, len(predictions)):
        names = ", ".join(p.name for p in predictions)
        raise ScoringError(
            f"the model returned shape {values.shape}; its signature promises "
            f"{rows} rows × {len(predictions)} outputs ({names})"
        )
    return [pa.array(values[:, i], type=p.type) for i, p in enumerate(predictions)]


def constant_arrays(model_name: str, model_version: str, scored_at: datetime, rows: int) -> list[pa.Array]:
    return [
        pa.repeat(pa.scalar(model_name, pa.string()), rows),
        pa.repeat(pa.scalar(int(model_version), pa.int64()), rows),
        pa.repeat(pa.scalar(scored_at, SCORED_AT_TYPE), rows),
    ]


def columns_of(schema: pa.Schema) -> tuple[Column, ...]:
    return tuple(Column(name=f.name, type=str(f.type), nullable=f.nullable) for f in schema)


def parquet_rows(folder: Path) -> int:
    """Rows in a local Parquet folder, read from the file footers only."""
    import pyarrow.dataset as ds

    return ds.dataset(str(folder), format="parquet").count_rows()


def local_path(location: str) -> Path:
    """A local folder from a path or a file:// URI; other schemes are not local."""
    if location.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(location).path))
    if "://" in location:
        raise ScoringError(f"the in-process scorer reads and writes local paths only, not {location!r}")
    return Path(location)


class FolderSwap:
    """Write a partition's folder beside its place, then swap it in: readers never see half a table,
    and a failed run leaves the previous scores untouched (jobs overwrite a partition by contract)."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.staging = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")

    def __enter__(self) -> Path:
        self.staging.mkdir(parents=True)
        return self.staging

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        old = self.dest.with_name(f".{self.dest.name}.old-{uuid.uuid4().hex[:8]}")
        if self.dest.exists():
            os.replace(self.dest, old)
        os.replace(self.staging, self.dest)
        shutil.rmtree(old, ignore_errors=True)
