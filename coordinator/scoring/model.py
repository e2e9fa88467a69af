"""Load one resolved model version, once, and expose what the scorers need from it.

The pyfunc wrapper checks and converts every batch against the signature. The in-process
scorer has already checked the table's schema once (signature.py) and casts each Arrow batch
to the signature's exact types, so for a scikit-learn model it calls the estimator's own
prediction method (the one the pyfunc flavor names, e.g. predict_proba) and skips that
per-batch work. Any other flavor goes through pyfunc.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from coordinator.errors import ScoringError
from coordinator.scoring.output import Prediction, predictions_of
from coordinator.scoring.resolve import ResolvedModel
from coordinator.scoring.signature import Feature, features_of


@contextlib.contextmanager
def using_store(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's module-level client at `tracking_uri` (tracking and registry), then restore it.

    Loading `models:/…` URIs and spark_udf read the module-level URIs; there is no per-call one.
    """
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


@dataclass(frozen=True)
class ModelShape:
    """What a model takes and gives, from its signature: enough to plan a scoring run."""

    resolved: ResolvedModel
    features: tuple[Feature, ...]
    predictions: tuple[Prediction, ...]

    @property
    def label(self) -> str:
        return f"{self.resolved.name} version {self.resolved.version}"


@dataclass(frozen=True)
class LoadedModel(ModelShape):
    predict: Callable[[object], object]  # a pandas DataFrame of the features → the model's output
    path: str  # "sklearn" (the estimator itself) or "pyfunc"


def describe(resolved: ResolvedModel, tracking_uri: str) -> ModelShape:
    """The model's signature without loading the model (only its MLmodel file is fetched)."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    try:
        with using_store(tracking_uri):
            info = get_model_info(resolved.uri)
    except (MlflowException, OSError) as exc:
        raise ScoringError(f"cannot read {resolved.uri} from {tracking_uri}: {exc}") from exc
    signature = info.signature
    return ModelShape(
        resolved,
        features_of(signature.inputs if signature else None),
        predictions_of(signature.outputs if signature else None),
    )


def load(resolved: ResolvedModel, tracking_uri: str, *, direct: bool = True) -> LoadedModel:
    """Download and load `resolved`; `direct=False` forces the pyfunc wrapper. Raises ScoringError."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        with using_store(tracking_uri):
            model = mlflow.pyfunc.load_model(resolved.uri)
    except (MlflowException, OSError) as exc:
        raise ScoringError(f"cannot load {resolved.uri} from {tracking_uri}: {exc}") from exc
    meta = model.metadata
    features = features_of(meta.get_input_schema())
    predictions = predictions_of(meta.get_output_schema())
    pyfunc_conf = meta.flavors.get("python_function", {})
    if direct and "sklearn" in meta.flavors and pyfunc_conf.get("loader_module") == "mlflow.sklearn":
        estimator = model.get_raw_model()
        method = getattr(estimator, pyfunc_conf.get("predict_fn", "predict"), None)
        if method is not None:
            return LoadedModel(resolved, features, predictions, method, "sklearn")
    return LoadedModel(resolved, features, predictions, model.predict, "pyfunc")
