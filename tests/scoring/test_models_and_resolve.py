"""The example churn model in a real MLflow store, and resolving references to exact versions."""

from __future__ import annotations

import numpy as np
import pytest

from coordinator.errors import ScoringError
from coordinator.scoring.resolve import ModelRef, parse_ref, resolve
from models import churn

pytestmark = pytest.mark.mlflow


def test_the_synthetic_users_are_reproducible_and_plausible() -> None:
    a, b = churn.generate_users(4000, seed=3), churn.generate_users(4000, seed=3)
    assert a.equals(b)
    assert not a.equals(churn.generate_users(4000, seed=4))
    assert 0.15 < a[churn.LABEL].mean() < 0.45
    assert a["user_id"].is_unique
    # Engagement drives the label: churners visit less.
    churned = a[a[churn.LABEL] == 1]["sessions_7d"].mean()
    stayed = a[a[churn.LABEL] == 0]["sessions_7d"].mean()
    assert churned < stayed
    assert set(churn.generate_features(10).column_names) == {"user_id", *churn.FEATURES}


def test_ensure_champion_registers_once_with_signature_and_example(mlflow_store) -> None:
    import mlflow

    uri = mlflow_store.tracking_uri
    version = churn.ensure_champion(uri, rows=2000, max_iter=8)
    assert version == "1"
    assert churn.ensure_champion(uri, rows=2000, max_iter=8) == "1"      # alias exists: nothing new
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    assert [str(v.version) for v in client.search_model_versions("name = 'churn'")] == ["1"]
    info = mlflow.models.get_model_info("models:/churn@champion")
    assert info.signature.inputs.input_names() == list(churn.FEATURES)
    assert [c.name for c in info.signature.outputs.inputs] == list(churn.OUTPUTS)
    assert info.saved_input_example_info is not None
    model = mlflow.pyfunc.load_model("models:/churn/1")
    proba = model.predict(churn.generate_users(50, seed=1)[list(churn.FEATURES)])
    assert proba.shape == (50, 2) and np.allclose(proba.sum(axis=1), 1.0)
    run = client.get_run(client.get_model_version("churn", "1").run_id)
    assert run.data.metrics["holdout_auc"] > 0.6
    assert (mlflow_store.artifact_root.parent / "mlartifacts").is_dir()   # artifacts beside the db


@pytest.mark.parametrize("text, expected", [
    ("models:/churn@champion", ModelRef("churn", alias="champion")),
    ("models:/churn/3", ModelRef("churn", version="3")),
    ("churn@challenger", ModelRef("churn", alias="challenger")),
    ("models:/churn/latest", ModelRef("churn", version="latest")),
])
def test_references_parse(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["", "models:/", "models:/churn/abc", "models:/a/b/c", "churn@"])
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(ScoringError, match="not a model reference"):
        parse_ref(text)


def test_resolving_pins_the_exact_version(churn_registry) -> None:
    uri = churn_registry.tracking_uri
    champion = resolve("models:/churn@champion", uri)
    assert (champion.version, champion.alias, champion.uri) == ("1", "champion", "models:/churn/1")
    assert resolve("models:/churn/2", uri).uri == "models:/churn/2"
    assert resolve("models:/churn/latest", uri).version == "2"
    for missing in ("models:/churn@nobody", "models:/churn/99", "models:/nothing@champion"):
        with pytest.raises(ScoringError, match="cannot resolve"):
            resolve(missing, uri)
