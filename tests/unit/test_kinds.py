"""Each job kind's settings model is light: loading a spec imports no launcher or adapter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from coordinator.kinds import KINDS, settings_model
from coordinator.launchers.registry import launcher_class

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("coordinator.launchers", "coordinator.scoring", "coordinator.push", "coordinator.engine", "pyspark",
         "mlflow", "sqlalchemy", "confluent_kafka", "pyarrow", "dlt", "dbt", "duckdb")


def test_loading_the_example_spec_imports_no_adapter() -> None:
    code = (
        "import sys, coordinator.spec.loader as l\n"
        "spec = l.load_spec('examples/website_scores/pipeline.yaml')\n"
        "assert set(spec.jobs) == {'load_app', 'reporting', 'user_features', 'churn_scores', "
        "'push_user_scores'}\n"
        f"heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))\n"
        "assert not heavy, heavy\n"
        "assert not any(m.startswith(('coordinator.launchers.spark', 'coordinator.scoring', "
        "'coordinator.push')) for m in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_kind_s_launcher_validates_with_the_light_model() -> None:
    for kind in KINDS:
        assert launcher_class(kind).settings_model is settings_model(kind)
