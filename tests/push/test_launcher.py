"""The `reverse_etl` kind end to end: a Parquet input pushed by a detached child process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from coordinator.launchers.base import InputRef, RunContext
from coordinator.launchers.registry import build_launcher
from coordinator.settings import Settings


def context(tmp_path: Path, location: Path, db: Path, run: str, **overrides: object) -> RunContext:
    settings = {
        "source": {"input": "scores.churn"},
        "destination": {"url": f"sqlite:///{db}", "table": "user_scores"},
        "mode": "upsert",
        "key": ["user_id"],
        "columns": {"user_id": "user_id", "churn": "churn_score"},
        "create_table": True,
        "max_rejected_fraction": 0.3,
        **overrides,
    }
    return RunContext(
        run_id=run,
        job="push_scores",
        partition="2024-05-01",
        attempt=1,
        settings=settings,
        inputs=(InputRef("scores.churn", "2024-05-01", "e1", location=str(location)),),
        outputs=("product.user_scores",),
        workdir=tmp_path / run,
        timeout_s=600,
    )


def test_reverse_etl_run_reports_counts(tmp_path: Path) -> None:
    folder = tmp_path / "scores" / "2024-05-01"
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table({"user_id": [1, 2, 3, None], "churn": [0.1, 0.2, 0.3, 0.4], "extra": list("abcd")}),
        folder / "part-0.parquet",
    )
    db = tmp_path / "product.db"
    launcher = build_launcher("reverse_etl", Settings(home=tmp_path / "home"))

    ctx = context(tmp_path, folder, db, "r1")
    result = launcher.wait(launcher.start(ctx), ctx)
    assert result.succeeded, result.error
    assert {k: result.details[k] for k in ("inserted", "updated", "rejected")} == {
        "inserted": 3,
        "updated": 0,
        "rejected": 1,
    }
    (out,) = result.outputs
    assert out.dataset == "product.user_scores" and out.attributes["inserted"] == "3"
    assert (ctx.workdir / "rejects.jsonl").read_text().count("null key") == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT user_id, churn_score FROM user_scores ORDER BY 1").fetchall() == [
            (1, 0.1),
            (2, 0.2),
            (3, 0.3),
        ]

    again = context(tmp_path, folder, db, "r2")
    result = launcher.wait(launcher.start(again), again)
    assert result.succeeded and result.details["unchanged"] == 3 and result.details["full"] is False

    strict = context(tmp_path, folder, db, "r3", max_rejected_fraction=0.0)
    result = launcher.wait(launcher.start(strict), strict)
    assert not result.succeeded and "TooManyRejects" in (result.error or "")
