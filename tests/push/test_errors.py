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
