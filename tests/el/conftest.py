"""A tiny dlt source written into a project folder of the test's own, and the coordinator's
embedded bus and store around it (dlt itself runs for real, into DuckDB or Parquet files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.bus.local import LocalBus
from coordinator.events import CompletionEvent
from coordinator.intake import EventIntake
from coordinator.launchers.base import Launcher, RunContext, RunResult
from coordinator.publish import Publisher
from coordinator.settings import Settings

# The day's orders; 2026-01-02 brings one amount as text, as an upstream API change would.
SOURCE = """
import dlt

ORDERS = {
    "2026-01-01": [{"id": 1, "amount": 30}, {"id": 2, "amount": 45}],
    "2026-01-02": [{"id": 3, "amount": 12}, {"id": 4, "amount": "12.5 EUR", "coupon": "XMAS"}],
    "2026-01-03": [{"id": 5, "amount": 7}],
}


@dlt.source
def shop(partition, window_start, window_end):
    @dlt.resource(write_disposition="merge", primary_key="id")
    def orders():
        for row in ORDERS[partition]:
            yield {**row, "day": partition, "loaded_for": window_start}

    @dlt.resource(write_disposition="replace")
    def customers():
        yield [{"id": 1, "name": "ada"}, {"id": 2, "name": "linus"}]

    return orders, customers


@dlt.resource(name="orders")
def failing(partition):
    raise ConnectionError(f"shop API answered 503 for {partition}")
    yield {}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "shop_source.py").write_text(SOURCE)
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", bus="local")
    settings.home.mkdir()
    return settings


def run_once(
    launcher: Launcher, workdir: Path, job: dict, partition: str, outputs: list[str], env: dict | None = None
) -> RunResult:
    """One run of a kind's launcher to its end, as the engine would start and wait for it."""
    ctx = RunContext(
        run_id=f"r-{partition}",
        job=f"{launcher.kind}_job",
        partition=partition,
        attempt=1,
        settings=job,
        inputs=(),
        outputs=tuple(outputs),
        workdir=workdir,
        timeout_s=300,
        env=env or {},
    )
    return launcher.wait(launcher.start(ctx), ctx)


def publish(settings: Settings, events: list[CompletionEvent]) -> None:
    with Publisher(LocalBus(settings.home / "bus.db"), settings) as publisher:
        publisher.publish_many(events)
        publisher.flush()


def published(settings: Settings, group: str) -> list[CompletionEvent]:
    with EventIntake(LocalBus(settings.home / "bus.db"), settings, group_id=group) as intake:
        out: list[CompletionEvent] = []
        while batch := intake.poll(1000, 0.2).events:
            out += batch
        return out
