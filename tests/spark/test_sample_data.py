"""The raw data generator (the features job's numbers are checked in test_spark_engine.py)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from jobs.sample_data import write_hourly_counts, write_raw_day

DAY = date(2026, 3, 10)


def test_raw_days_are_deterministic_and_users_stable(tmp_path: Path) -> None:
    a = write_raw_day(tmp_path / "a", DAY, n_users=50, seed=9)
    b = write_raw_day(tmp_path / "b", DAY, n_users=50, seed=9)
    again = write_raw_day(tmp_path / "a", DAY, n_users=50, seed=9)           # rewriting replaces the folder
    assert again == a and len(list(a["events"].iterdir())) == 1
    for name in ("users", "events"):
        assert pq.read_table(a[name]).equals(pq.read_table(b[name]))
    next_day = write_raw_day(tmp_path / "a", DAY + timedelta(days=1), n_users=50, seed=9)
    u1, u2 = (pq.read_table(p["users"]).to_pandas() for p in (a, next_day))
    assert (u1[["user_id", "country", "plan", "signup_date"]] == u2[["user_id", "country", "plan",
                                                                    "signup_date"]]).all().all()
    e1, e2 = (pq.read_table(p["events"]).to_pandas() for p in (a, next_day))
    assert not e1.equals(e2) and e1.event_id.is_unique
    assert set(e1.event_type) <= {"session_start", "page_view", "add_to_cart", "purchase", "support_ticket"}
    assert (e1.event_time.dt.date == DAY).all()
    assert e1.amount.notna().eq(e1.event_type == "purchase").all()


def test_hourly_counts_add_up_to_the_day(tmp_path: Path) -> None:
    hours = write_hourly_counts(tmp_path, DAY, n_users=40, seed=4)
    assert list(hours) == [f"{DAY}T{h:02d}" for h in range(24)]
    total = sum(pq.read_table(p).to_pandas()["events"].sum() for p in hours.values())
    from jobs.sample_data import events_table
    assert total == events_table(DAY, 40, 4).num_rows > 0
