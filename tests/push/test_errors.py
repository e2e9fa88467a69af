"""Driver errors never cross a destination's edge: each becomes a PushError."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from coordinator.errors import PushError
from coordinator.push import DestinationSettings, push

UNREACHABLE = [
    "postgresql://nobody:secret@127.0.0.1:1/none",
    "mysql+pymysql://nobody:secret@127.0.0.1:1/none",
    "sqlite:////nonexistent-folder/sub/x.db",
]


@pytest.mark.parametrize("url", UNREACHABLE, ids=["postgresql", "mysql", "sqlite"])
def test_unreachable_destination_is_a_push_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(PushError) as caught:
        push(
            pa.table({"id": [1]}),
            DestinationSettings(url=url, table="t"),
            job="j",
            key=["id"],
            state_dir=tmp_path,
        )
    assert "secret" not in str(caught.value)


def test_unknown_scheme_and_bad_mapping(tmp_path: Path) -> None:
    with pytest.raises(PushError, match="unsupported destination"):
        push(
            pa.table({"id": [1]}),
            DestinationSettings(url="oracle://x", table="t"),
            job="j",
            key=["id"],
            state_dir=tmp_path,
        )
    with pytest.raises(PushError, match="source has no column"):
        push(
            pa.table({"id": [1]}),
            DestinationSettings(url="sqlite:///x.db", table="t"),
            job="j",
            key=["id"],
            columns={"nope": "id"},
            state_dir=tmp_path,
        )


def test_settings_are_strict() -> None:
    from pydantic import ValidationError

    from coordinator.push.config import PushSettings

    good = {
        "source": {"input": "scores.churn"},
        "destination": {"url": "sqlite:///x.db", "table": "t"},
        "key": ["id"],
    }
    assert PushSettings.model_validate(good).mode == "upsert"
    for bad in (
        {**good, "mdoe": "upsert"},
        {**good, "source": {"input": "a", "parquet": "b"}},
        {**good, "destination": {"url": "postgresql://h/db"}},
        {**good, "key": []},
        {**good, "mode": "merge"},
    ):
        with pytest.raises(ValidationError):
            PushSettings.model_validate(bad)
    secret = PushSettings.model_validate(
        {**good, "destination": {"url": "mysql://u@h/db", "table": "t", "password": "hunter2"}}
    )
    assert "hunter2" not in repr(secret) and "hunter2" not in secret.model_dump_json()
