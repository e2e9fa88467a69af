from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.settings import Settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings from the environment (as the CLI reads them) under tmp_path, and the spec file."""
    from tests.observe.journey import spec_text

    home = tmp_path / "home"
    home.mkdir()
    for name in ("COORD_STATE_URL", "COORD_API_TOKEN", "COORD_ALERT_WEBHOOKS", "COORD_LINEAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COORD_HOME", str(home))
    monkeypatch.setenv("COORD_BUS", "local")
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("COORD_ANONYMOUS_READS", "true")  # the UI's reads on loopback, as coord demo
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(spec_text(tmp_path / "marker"))
    monkeypatch.setenv("COORD_SPEC", str(spec))
    return tmp_path, spec, Settings()
