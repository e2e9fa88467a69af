"""What every example model does with MLflow: point the client at a store, pick an experiment
whose artifacts sit beside a local store, log + register a scikit-learn pipeline, move an alias.

Kept apart from the model code so each model module holds only its data and its estimator.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd


def artifact_root_for(tracking_uri: str) -> str | None:
    """Where a local SQLite store keeps artifacts: a folder beside the database file.

    MLflow's own default for a new experiment is `./mlruns` under the current directory,
    which would scatter artifacts wherever a command happens to run. A server chooses for
    itself, so other stores get None.
    """
    parts = urlsplit(tracking_uri)
    if parts.scheme != "sqlite":
        return None
    # SQLAlchemy form: sqlite:///relative.db or sqlite:////absolute.db — drop exactly one slash.
    db_path = Path(unquote(parts.path[1:]))
    return (db_path.parent / "mlartifacts").resolve().as_uri()


@contextlib.contextmanager
def using_store(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `tracking_uri` (tracking and registry), then restore it."""
    import mlflow

    before_tracking, before_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before_tracking)
        mlflow.set_registry_uri(before_registry)


def ensure_experiment(name: str, tracking_uri: str) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=artifact_root_for(tracking_uri))


def log_and_register(
    pipeline: object,
    *,
    tracking_uri: str,
    experiment: str,
    model_name: str,
    example: pd.DataFrame,
    output_names: tuple[str, ...],
    predict_fn: str,
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    trusted_types: tuple[str, ...] = (),
) -> str:
    """Log `pipeline` with a signature and an input example, register it; returns the new version.

    The signature's outputs name the prediction columns, which is what the scorer writes.
    Pip requirements are given rather than inferred: inference imports the model in a
    subprocess and costs seconds for nothing we do not already know. The model is stored with
    skops (no arbitrary code on load); `trusted_types` lists the types the model's author
    vouches for that skops does not trust by default.
    """
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    with warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold missing values; ours never miss any.
        warnings.simplefilter("ignore", UserWarning)
        inputs = infer_signature(example).inputs
    signature = ModelSignature(
        inputs=inputs,
        outputs=Schema([ColSpec("double", name) for name in output_names]),
    )
    with using_store(tracking_uri):
        experiment_id = ensure_experiment(experiment, tracking_uri)
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.log_params(dict(params))
            mlflow.log_metrics(dict(metrics))
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=signature,
                input_example=example,
                registered_model_name=model_name,
                pyfunc_predict_fn=predict_fn,
                pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"pandas=={pd.__version__}"],
                serialization_format="skops",
                skops_trusted_types=list(trusted_types) or None,
            )
    return str(info.registered_model_version)


def alias_version(tracking_uri: str, model_name: str, alias: str) -> str | None:
    """The version `alias` points at, or None when the model or the alias does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def set_alias(tracking_uri: str, model_name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(
        model_name, alias, str(version))
