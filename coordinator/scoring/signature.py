"""Check an input table's Arrow schema against a model's input signature, before scoring.

A table that does not fit the model (a column renamed upstream, an int turned into a string)
must block the run with the columns named, not fail deep inside the model — or worse, score
garbage. The rules mirror MLflow's own input enforcement (same-kind upcasts, small ints to
double, any string to string), so the in-process scorer and the Spark path, which goes through
MLflow's pyfunc, accept exactly the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from coordinator.errors import ScoringError, SignatureMismatch


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # MLflow's DataType name: long, double, string, ...
    required: bool = True


MLFLOW_TO_ARROW: dict[str, pa.DataType] = {  # MLflow DataType name → Arrow type, inputs and outputs
    "boolean": pa.bool_(),
    "integer": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "binary": pa.binary(),
    "datetime": pa.timestamp("ns"),
}


def features_of(input_schema: object) -> tuple[Feature, ...]:
    """The named columns of an MLflow input `Schema`; tensor or unnamed signatures are refused."""
    if input_schema is None:
        raise ScoringError("the model has no input signature; log it with one to score tables")
    if input_schema.is_tensor_spec() or not input_schema.has_input_names():
        raise ScoringError("the score kind needs a column-based model signature (named columns)")
    features = []
    for spec in input_schema.inputs:
        type_name = getattr(spec.type, "name", None)
        if type_name not in MLFLOW_TO_ARROW:
            raise ScoringError(
                f"signature column {spec.name!r} has type {spec.type}, which tables cannot carry"
            )
        features.append(Feature(spec.name, type_name, bool(getattr(spec, "required", True))))
    return tuple(features)


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _fits(actual: pa.DataType, expected: str) -> bool:
    t = _value_type(actual)
    if pa.types.is_integer(t):
        width, signed = t.bit_width, pa.types.is_signed_integer(t)
        if expected == "long":
            return signed or width < 64
        if expected == "integer":
            return width <= 32 if signed else width < 32
        return expected == "double" and width <= 32  # MLflow: ints of up to 6 bytes to double
    if pa.types.is_floating(t):
        return expected == "double" or (expected == "float" and t.bit_width <= 32)
    if pa.types.is_decimal(t):
        return expected == "double"
    if expected == "string":
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if expected == "binary":
        return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
    if expected == "boolean":
        return pa.types.is_boolean(t)
    if expected == "datetime":
        return (pa.types.is_timestamp(t) and t.tz is None) or pa.types.is_date(t)
    return False


def check(schema: pa.Schema, features: tuple[Feature, ...], model: str) -> pa.Schema:
    """The Arrow schema to cast the feature columns to; raises SignatureMismatch naming the columns.

    Extra input columns are fine (keys, partition columns); a missing required column or a
    column whose type cannot be converted safely is not. Optional signature columns that are
    absent are left out of the returned schema.
    """
    problems: list[str] = []
    columns: list[str] = []
    target: list[pa.Field] = []
    for feature in features:
        index = schema.get_field_index(feature.name)
        if index < 0:
            if feature.required:
                columns.append(feature.name)
                problems.append(f"{feature.name} is missing (model expects {feature.type})")
            continue
        actual = schema.field(index).type
        if not _fits(actual, feature.type):
            columns.append(feature.name)
            problems.append(f"{feature.name} is {_value_type(actual)} (model expects {feature.type})")
            continue
        target.append(pa.field(feature.name, MLFLOW_TO_ARROW[feature.type]))
    if problems:
        raise SignatureMismatch(model, columns, "; ".join(problems))
    return pa.schema(target)
