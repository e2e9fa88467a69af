"""The input table's schema against a model signature: what passes, what blocks, and the
column names a mismatch reports. Pure checks on Arrow schemas, no model needed."""

from __future__ import annotations

import pyarrow as pa
import pytest
from mlflow.types import ColSpec, Schema, TensorSpec

from coordinator.errors import ScoringError, SignatureMismatch
from coordinator.scoring.signature import check, features_of

SIGNATURE = Schema([ColSpec("string", "country"), ColSpec("long", "sessions_7d"),
                    ColSpec("double", "avg_session_minutes"), ColSpec("integer", "tickets"),
                    ColSpec("boolean", "is_paid"), ColSpec("double", "discount", required=False)])
FEATURES = features_of(SIGNATURE)


def table_schema(**overrides: pa.DataType | None) -> pa.Schema:
    fields = {"user_id": pa.int64(), "country": pa.string(), "sessions_7d": pa.int64(),
              "avg_session_minutes": pa.float64(), "tickets": pa.int32(), "is_paid": pa.bool_()}
    fields.update(overrides)
    return pa.schema([pa.field(n, t) for n, t in fields.items() if t is not None])


def test_a_fitting_table_gives_the_signature_types_and_ignores_extra_columns() -> None:
    target = check(table_schema(), FEATURES, "churn version 1")
    assert target.names == ["country", "sessions_7d", "avg_session_minutes", "tickets", "is_paid"]
    assert target.field("sessions_7d").type == pa.int64()
    assert target.field("tickets").type == pa.int32()
    assert "user_id" not in target.names          # keys pass through the scorer, not the model


@pytest.mark.parametrize("column, arrow_type", [
    ("sessions_7d", pa.int32()),                  # int upcast to long
    ("sessions_7d", pa.uint16()),
    ("avg_session_minutes", pa.float32()),        # float upcast to double
    ("avg_session_minutes", pa.int32()),          # small ints to double
    ("country", pa.large_string()),
    ("country", pa.dictionary(pa.int32(), pa.string())),
])
def test_safe_conversions_pass(column: str, arrow_type: pa.DataType) -> None:
    target = check(table_schema(**{column: arrow_type}), FEATURES, "m")
    assert column in target.names


@pytest.mark.parametrize("column, arrow_type", [
    ("sessions_7d", pa.float64()),                # double → long loses values
    ("sessions_7d", pa.uint64()),
    ("avg_session_minutes", pa.int64()),          # MLflow refuses int64 → double too
    ("tickets", pa.int64()),                      # long → integer narrows
    ("country", pa.int64()),
    ("is_paid", pa.string()),
])
def test_unsafe_conversions_block_naming_the_column(column: str, arrow_type: pa.DataType) -> None:
    with pytest.raises(SignatureMismatch) as caught:
        check(table_schema(**{column: arrow_type}), FEATURES, "churn version 1")
    assert caught.value.columns == [column]
    assert column in str(caught.value) and "churn version 1" in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    schema = table_schema(country=None, sessions_7d=pa.string())
    with pytest.raises(SignatureMismatch) as caught:
        check(schema, FEATURES, "m")
    assert caught.value.columns == ["country", "sessions_7d"]
    assert "country is missing" in str(caught.value)
    assert "sessions_7d is string (model expects long)" in str(caught.value)


def test_an_optional_signature_column_may_be_absent() -> None:
    assert "discount" not in check(table_schema(), FEATURES, "m").names
    assert check(table_schema(discount=pa.float64()), FEATURES, "m").field("discount").type == pa.float64()


def test_models_without_a_column_signature_are_refused() -> None:
    import numpy as np

    with pytest.raises(ScoringError, match="no input signature"):
        features_of(None)
    with pytest.raises(ScoringError, match="column-based"):
        features_of(Schema([TensorSpec(np.dtype("float64"), (-1, 4))]))
