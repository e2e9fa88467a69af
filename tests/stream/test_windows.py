"""The stream worker's own completion logic, without a broker: windows, watermark, lateness,
replays and refused messages (coordinator/streamjob.py imports faust only to run)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.streamjob import WindowState, event_id, parse_click, window_end, window_key

T0 = datetime(2024, 6, 1, 5, tzinfo=UTC).timestamp()  # 2024-06-01T05:00Z


def test_an_event_time_is_epoch_seconds_or_iso_8601_and_utc_without_offset():
    assert parse_click(b'{"ts": 1717218000}', "ts", None) == (1717218000.0, "all")
    assert parse_click(b'{"ts": "2024-06-01T05:00:00", "u": 7}', "ts", "u") == (T0, "7")
    assert parse_click(b'{"ts": "2024-06-01T07:00:00+02:00"}', "ts", None) == (T0, "all")
    assert window_key(T0 + 3599) == "2024-06-01T05" and window_end("2024-06-01T05") == T0 + 3600


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object with 'ts'"),
        (b'{"at": 1}', "not a JSON object with 'ts'"),
        (b'{"ts": true}', "neither epoch seconds nor an ISO 8601 time"),
        (b'{"ts": "yesterday"}', "is not an ISO 8601 time: 'yesterday'"),
    ],
)
def test_a_message_without_an_event_time_is_refused_saying_why(value: bytes, reason: str):
    with pytest.raises(ValueError, match=reason):
        parse_click(value, "ts", None)


def test_windows_close_by_the_watermark_and_late_data_is_counted_not_applied(tmp_path: Path):
    state = WindowState(tmp_path / "state.json", lateness_s=600)
    assert state.apply("t:0", 0, T0 + 100, "a") == "events"
    assert state.apply("t:0", 1, T0 + 3600 + 500, "a") == "events"  # 06:08: watermark 05:58
    assert state.closable() == []
    assert state.apply("t:1", 0, T0 + 3000, "b") == "events"  # out of order, within the lateness
    assert state.apply("t:0", 2, T0 + 3600 + 700, "a") == "events"  # watermark 06:01.40
    assert state.closable() == ["2024-06-01T05"]
    assert state.windows["2024-06-01T05"] == {"a": 1, "b": 1}
    state.close("2024-06-01T05")
    assert state.apply("t:1", 1, T0 + 3500, "b") == "late"  # its window was announced
    assert state.apply("t:1", 2, T0 - 10, "b") == "late"  # older than the watermark's hour
    assert state.apply("t:1", 3, None, "") == "rejected"
    assert state.counts == {"events": 4, "late": 2, "rejected": 1, "replayed": 0}
    assert "2024-06-01T04" not in state.windows and state.watermark == T0 + 3600 + 100


def test_a_replay_after_a_restart_counts_nothing_twice(tmp_path: Path):
    state = WindowState(tmp_path / "state.json", lateness_s=0)
    for offset in range(5):
        state.apply("t:0", offset, T0 + offset, "a")
    state.save()
    again = WindowState(tmp_path / "state.json", lateness_s=0)  # the worker killed and restarted
    outcomes = [again.apply("t:0", offset, T0 + offset, "a") for offset in range(7)]
    assert outcomes == ["replayed"] * 5 + ["events"] * 2
    assert again.windows == {"2024-06-01T05": {"a": 7}} and again.generation == state.generation
    assert json.loads((tmp_path / "state.json").read_text())["applied"] == {"t:0": 4}


def test_a_window_announcement_has_one_id_per_job_dataset_and_window():
    assert event_id("clicks_hourly", "stream.clicks", "2024-06-01T05") == (
        "stream:clicks_hourly:stream.clicks:2024-06-01T05"
    )


def test_late_data_revises_a_closed_window_when_asked_and_only_within_its_horizon(tmp_path: Path):
    state = WindowState(tmp_path / "state.json", lateness_s=0, revise_within_s=7200)
    state.apply("t:0", 0, T0 + 10, "a")
    state.apply("t:0", 1, T0 + 3600 + 10, "a")  # closes 05
    [closed] = state.closable()
    state.close(closed)
    assert state.apply("t:0", 2, T0 + 20, "b") == "late" and state.revisions() == ["2024-06-01T05"]
    assert state.closed["2024-06-01T05"] == {"a": 1, "b": 1} and state.revise("2024-06-01T05") == 2
    assert state.revisions() == [] and event_id("j", "d", "2024-06-01T05", 2) == "stream:j:d:2024-06-01T05:v2"
    state.apply("t:0", 3, T0 + 4 * 3600, "a")  # watermark 09:00: 05 is past the two hours' horizon
    assert state.apply("t:0", 4, T0 + 30, "c") == "late" and state.revisions() == []
    state.save()
    saved = WindowState(tmp_path / "state.json", lateness_s=0, revise_within_s=7200)
    assert saved.versions == {"2024-06-01T05": 2} and saved.announced == {"2024-06-01T05"}


def test_late_data_is_only_counted_by_default(tmp_path: Path):
    state = WindowState(tmp_path / "state.json", lateness_s=0)
    state.apply("t:0", 0, T0 + 10, "a")
    state.apply("t:0", 1, T0 + 3600 + 10, "a")
    state.close(state.closable()[0])
    assert state.apply("t:0", 2, T0 + 20, "b") == "late" and state.revisions() == [] and state.closed == {}
