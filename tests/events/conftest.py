"""Producers' paths (CLI, SDK, HTTP, dbt) publish onto an embedded bus in a temp folder and the
tests read the events back through the same EventIntake the engine uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.bus.factory import open_bus
from coordinator.events import CompletionEvent
from coordinator.intake import EventIntake
from coordinator.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Local-bus settings, also exported as COORD_* for code that builds its own Settings()."""
    monkeypatch.chdir(tmp_path)
    for name in ("COORD_BUS", "COORD_TOPIC_EVENTS", "COORD_SCHEMA_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COORD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COORD_BUS", "local")
    yield Settings()


def read_events(settings: Settings, expected: int) -> list[CompletionEvent]:
    events: list[CompletionEvent] = []
    with EventIntake(open_bus(settings), settings, group_id="reader") as intake:
        for _ in range(20):
            batch = intake.poll(1000, 0.2)
            assert batch.dead_lettered == 0
            events += batch.events
            if len(events) >= expected:
                break
    return events
