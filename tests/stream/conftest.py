"""The stream tests' fixtures: the worker's interpreter, and fresh topics on the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.kinds.stream import DEFAULT_PYTHON
from tests.conftest import missing, unique


@pytest.fixture
def stream_python() -> Path:
    """The worker's interpreter: missing fails in CI (scripts/bootstrap dev makes it), else skips."""
    if not DEFAULT_PYTHON.exists():
        missing("the stream worker's interpreter", f"{DEFAULT_PYTHON}: run scripts/bootstrap stream")
    return DEFAULT_PYTHON


@pytest.fixture
def topics(kafka_bootstrap: str, stream_python: Path):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    names = {"clicks": (unique("clicks").replace("_", "-"), 2), "events": (unique("ev").replace("_", "-"), 1)}
    names["dead"] = (names["events"][0] + "-dead", 1)
    created = admin.create_topics(
        [NewTopic(n, num_partitions=p, replication_factor=1) for n, p in names.values()]
    )
    for future in created.values():
        future.result(30)
    yield {k: n for k, (n, _) in names.items()}
    for future in admin.delete_topics([n for n, _ in names.values()]).values():
        future.result(30)
