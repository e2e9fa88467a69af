"""A real MLflow store (SQLite, artifacts in a temp folder) with the churn model registered,
shared by the session: version 1 is the champion, version 2 (another seed) waits to be promoted.

Training is kept tiny (a few thousand rows, a dozen boosting rounds) so the store is ready in
seconds; the mlflow_store fixture of tests/conftest.py is per test, this one is per session. Tests that
move the alias put it back on version 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from models import churn

TINY = {"rows": 3000, "max_iter": 12}


@dataclass(frozen=True)
class ChurnRegistry:
    tracking_uri: str
    folder: Path


@pytest.fixture(scope="session")
def churn_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChurnRegistry]:
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    assert churn.ensure_champion(uri, seed=7, **TINY) == "1"
    # The command line registers the challenger (no alias): the same path a person would use.
    assert churn.main(["--tracking-uri", uri, "--seed", "8", "--rows", str(TINY["rows"]),
                       "--max-iter", str(TINY["max_iter"]), "--no-alias"]) == 0
    yield ChurnRegistry(uri, folder)


def write_features(path: Path, rows: int, seed: int, **row_group) -> Path:
    """One partition of the reporting table `user_features`, as a Parquet folder."""
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(churn.generate_features(rows, seed=seed), path / "part-0.parquet", **row_group)
    return path
