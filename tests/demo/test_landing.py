"""The example's raw EL landing: what is written, and the events an EL tool would publish."""

from __future__ import annotations

from datetime import date

import pyarrow.parquet as pq

from coordinator.codec import codec_for
from coordinator.demo.landing import days_ending, land
from coordinator.settings import Settings


def test_days_ending_is_consecutive_and_oldest_first() -> None:
    assert days_ending(date(2025, 3, 1), 3) == [date(2025, 2, 27), date(2025, 2, 28), date(2025, 3, 1)]


def test_landed_tables_are_described_by_their_events(tmp_path) -> None:
    landed = land(tmp_path, days_ending(date(2025, 6, 3), 2), n_users=40, seed=3)
    assert [(t.dataset, t.partition) for t in landed] == [
        ("fivetran.app.users", "2025-06-02"), ("fivetran.app.events", "2025-06-02"),
        ("fivetran.app.users", "2025-06-03"), ("fivetran.app.events", "2025-06-03")]
    codec = codec_for(Settings(home=tmp_path))
    for table in landed:
        event = table.event()
        on_disk = pq.read_table(event.location)
        assert event.producer == "fivetran"
        assert event.row_count == on_disk.num_rows > 0
        assert [c.name for c in event.columns] == on_disk.schema.names
        assert codec.decode(codec.encode(event)) == event
    users = [t for t in landed if t.dataset.endswith("users")]
    assert all(t.row_count == 40 for t in users)


def test_same_data_same_event_id_changed_data_new_one(tmp_path) -> None:
    day = days_ending(date(2025, 6, 3), 1)
    first = [t.event().event_id for t in land(tmp_path / "a", day, n_users=30, seed=1)]
    again = [t.event().event_id for t in land(tmp_path / "a", day, n_users=30, seed=1)]
    changed = [t.event().event_id for t in land(tmp_path / "a", day, n_users=30, seed=2)]
    assert first == again
    assert not set(first) & set(changed)
