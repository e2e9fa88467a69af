"""The stream worker's own completion logic, without a broker: windows, watermark, lateness,
replays, refused messages and a flush's order (coordinator/streamwindows.py, no faust)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.streamstate import WindowState, summary
from coordinator.streamwindows import event_id, parse_click, window_end, window_key

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


def owning(tmp_path: Path, *sources: str, **options: float | None) -> WindowState:
    """A worker's view of a job's state folder, owning `sources` (as faust's assignment claims)."""
    options.setdefault("lateness_s", 0)
    state = WindowState(tmp_path / "state", **options)  # type: ignore[arg-type]
    state.claim(sources)
    return state


def all_read(state: WindowState) -> dict[str, int | None]:
    """End offsets with every partition read to its end."""
    return {source: part.applied + 1 for source, part in state.known().items()}


def test_windows_close_by_the_watermark_and_late_data_is_counted_not_applied(tmp_path: Path):
    state = owning(tmp_path, "t:0", "t:1", lateness_s=600)

    def caught_up(source: str, offset: int, when: float | None, key: str) -> str:
        outcome = state.apply(source, offset, when, key)
        state.advance(all_read(state))  # every partition read to its end: the largest event time leads
        return outcome

    assert caught_up("t:0", 0, T0 + 100, "a") == "events"
    assert caught_up("t:0", 1, T0 + 3600 + 500, "a") == "events"  # 06:08: watermark 05:58
    assert state.closable() == []
    assert caught_up("t:1", 0, T0 + 3000, "b") == "events"  # out of order, within the lateness
    assert caught_up("t:0", 2, T0 + 3600 + 700, "a") == "events"  # watermark 06:01.40
    assert state.closable() == ["2024-06-01T05"]
    assert state.contents("2024-06-01T05") == {"a": 1, "b": 1}
    state.close("2024-06-01T05", state.contents("2024-06-01T05"))
    assert caught_up("t:1", 1, T0 + 3500, "b") == "late"  # its window was announced
    assert caught_up("t:1", 2, T0 - 10, "b") == "late"  # older than the watermark's hour
    assert caught_up("t:1", 3, None, "") == "rejected"
    assert state.apply("t:9", 0, T0, "c") == "foreign"  # not owned here: its owner applies it
    assert state.counts() == {"events": 4, "late": 2, "rejected": 1, "replayed": 0}
    assert state.contents("2024-06-01T04") == {} and state.watermark == T0 + 3600 + 100


def test_a_partition_behind_holds_the_watermark_and_one_caught_up_does_not(tmp_path: Path):
    state = owning(tmp_path, "t:0", "t:1")
    far = 10**6
    state.apply("t:0", 0, T0 + 5 * 3600, "a")  # partition 0 runs five hours ahead
    assert state.advance(None) is None  # no assignment yet: nothing moves
    assert state.advance({"t:0": far, "t:1": far}) is None  # partition 1 is behind, has shown nothing
    assert state.advance({"t:0": far, "t:1": None}) is None  # an end offset not known: behind
    state.apply("t:1", 0, T0 + 10, "b")
    assert state.advance({"t:0": far, "t:1": far}) == T0 + 10 and state.closable() == []
    assert state.apply("t:1", 1, T0 + 20, "b") == "events"  # its backlog is not late
    state.apply("t:1", 2, T0 + 3600 + 5, "b")
    assert state.advance({"t:0": 1, "t:1": far}) == T0 + 3600 + 5  # partition 0 caught up: no hold
    assert state.closable() == ["2024-06-01T05"] and state.contents("2024-06-01T05") == {"b": 2}
    assert state.advance({"t:0": 1, "t:1": 3}) == T0 + 5 * 3600  # all caught up: the largest time
    assert state.advance({"t:0": 1, "t:1": far}) == T0 + 5 * 3600  # and it never moves back
    with state.locked():
        state.sync(None)
    again = owning(tmp_path, "t:0", "t:1")  # a restart resumes it
    assert again.watermark == T0 + 5 * 3600
    assert {s: p.time for s, p in again.parts.items()} == {"t:0": T0 + 5 * 3600, "t:1": T0 + 3600 + 5}


def test_a_replay_after_a_restart_counts_nothing_twice(tmp_path: Path):
    state = owning(tmp_path, "t:0")
    for offset in range(5):
        state.apply("t:0", offset, T0 + offset, "a")
    with state.locked():
        state.sync(None)
    again = owning(tmp_path, "t:0")  # the worker killed and restarted
    outcomes = [again.apply("t:0", offset, T0 + offset, "a") for offset in range(7)]
    assert outcomes == ["replayed"] * 5 + ["events"] * 2
    assert again.contents("2024-06-01T05") == {"a": 7} and again.generation == state.generation
    assert summary(tmp_path / "state")["applied"] == {"t:0": 4}


def test_a_lost_part_makes_a_fresh_generation_that_reads_from_the_start(tmp_path: Path):
    """The job's file says partition 0 was held; its file is gone: the consumer group's offsets
    would skip what it held, so the state takes a new generation (a group of its own)."""
    state = owning(tmp_path, "t:0", "t:1")
    (tmp_path / "state" / "parts" / "t.0.json").unlink()
    again = owning(tmp_path, "t:1")
    assert again.generation != state.generation


def test_a_window_announcement_has_one_id_per_job_dataset_and_window():
    assert event_id("clicks_hourly", "stream.clicks", "2024-06-01T05") == (
        "stream:clicks_hourly:stream.clicks:2024-06-01T05"
    )


def test_late_data_revises_a_closed_window_when_asked_and_only_within_its_horizon(tmp_path: Path):
    state = owning(tmp_path, "t:0", revise_within_s=7200)
    state.apply("t:0", 0, T0 + 10, "a")
    state.apply("t:0", 1, T0 + 3600 + 10, "a")  # closes 05
    state.advance(all_read(state))
    [closed] = state.closable()
    state.close(closed, state.contents(closed))
    assert state.apply("t:0", 2, T0 + 20, "b") == "late" and state.revisions() == ["2024-06-01T05"]
    assert state.revised_contents("2024-06-01T05") == {"a": 1, "b": 1} and state.revise("2024-06-01T05") == 2
    assert state.revisions() == [] and event_id("j", "d", "2024-06-01T05", 2) == "stream:j:d:2024-06-01T05:v2"
    state.apply("t:0", 3, T0 + 4 * 3600, "a")  # watermark 09:00: 05 is past the two hours' horizon
    state.advance(all_read(state))
    assert state.apply("t:0", 4, T0 + 30, "c") == "late" and state.revisions() == []
    with state.locked():
        state.sync(None)
    saved = owning(tmp_path, "t:0", revise_within_s=7200)
    assert saved.versions == {"2024-06-01T05": 2} and saved.announced == {"2024-06-01T05"}


def test_late_data_is_only_counted_by_default(tmp_path: Path):
    state = owning(tmp_path, "t:0")
    state.apply("t:0", 0, T0 + 10, "a")
    state.apply("t:0", 1, T0 + 3600 + 10, "a")
    state.advance(all_read(state))
    [closed] = state.closable()
    state.close(closed, state.contents(closed))
    assert state.apply("t:0", 2, T0 + 20, "b") == "late" and state.revisions() == [] and state.closed == {}


def test_a_flush_writes_the_file_then_announces_then_saves_then_acknowledges(tmp_path: Path):
    """The order of coordinator/streamwindows.flush_batch, watched from the outside at each step:
    when the event is sent, the window's Parquet file is whole on disk and the saved state does not
    call it announced yet; when the batch is acknowledged (so faust may commit), the saved state
    does; a send that fails leaves the window open and the batch unacknowledged."""
    import asyncio

    import pyarrow.parquet as pq

    from coordinator.streamwindows import Announcer, flush_batch, load_event_schema

    state = owning(tmp_path, "t:0")
    for offset, (when, key) in enumerate([(T0 + 10, "a"), (T0 + 20, "b"), (T0 + 30, "a"), (T0 + 3600, "a")]):
        state.apply("t:0", offset, when, key)
    steps: list[str] = []
    repo = Path(__file__).resolve().parents[2]
    template = str(tmp_path / "out" / "{partition}")

    def saved_announced() -> list[str]:
        return summary(tmp_path / "state")["announced"]

    async def send(ident: str, value: bytes) -> None:
        [location] = (tmp_path / "out").glob("*/part-0.parquet")
        rows = pq.read_table(location).to_pylist()
        assert value[:2] == b"\xce\x02" and ident.endswith("2024-06-01T05")
        assert rows == [
            {"hour": "2024-06-01T05", "user": "a", "events": 2},
            {"hour": "2024-06-01T05", "user": "b", "events": 1},
        ]
        assert saved_announced() == [] and not list(location.parent.glob(".*"))  # no temporary left
        assert summary(tmp_path / "state")["applied"] == {"t:0": 3}  # the part saved before
        steps.append("sent")

    async def ack(event: int) -> None:
        assert saved_announced() == ["2024-06-01T05"]
        steps.append(f"ack {event}")

    async def ends() -> dict[str, int | None]:
        return all_read(state)

    announce = Announcer(template, "j", "d", "user", load_event_schema(repo / "topics"), send)
    batch = [("t:0", n) for n in range(4)]
    assert asyncio.run(flush_batch(state, batch, announce, ack, ends)) == ["stream:j:d:2024-06-01T05"]
    assert steps == ["sent", "ack 0", "ack 1", "ack 2", "ack 3"]

    async def refused(ident: str, value: bytes) -> None:
        raise ConnectionError("the broker did not acknowledge")

    state.apply("t:0", 4, T0 + 2 * 3600, "a")  # closes 06
    failing = Announcer(template, "j", "d", "user", load_event_schema(repo / "topics"), refused)
    with pytest.raises(ConnectionError):
        asyncio.run(flush_batch(state, [("t:0", 4)], failing, ack, ends))
    assert saved_announced() == ["2024-06-01T05"] and "2024-06-01T06" in state.open_windows()
    assert steps[-1] == "ack 3"  # offset 4 not acknowledged: faust commits nothing past it


def test_two_workers_share_the_job_partition_by_partition(tmp_path: Path):
    """Two workers' views of one state folder (what faust's rebalance does to them, by hand): a
    partition moves with its file, the one who lost it drops what it had not saved, a window is
    closed only when every partition's owner has passed it, and it is announced once."""
    a = owning(tmp_path, "t:0", "t:1")
    a.apply("t:0", 0, T0 + 10, "a")
    a.apply("t:1", 0, T0 + 20, "b")
    with a.locked():
        a.sync(None)
    a.apply("t:1", 1, T0 + 30, "b")  # applied in memory, not saved: lost with the partition
    b = WindowState(tmp_path / "state", lateness_s=0)
    assert b.claim(["t:1"], generation=2) == set() and b.parts["t:1"].applied == 0  # from its file
    with a.locked():
        assert a.sync(None) == ["t:1"] and list(a.parts) == ["t:0"]  # dropped, unwritten
    assert summary(tmp_path / "state")["applied"] == {"t:0": 0, "t:1": 0}
    assert b.apply("t:1", 1, T0 + 30, "b") == "events"  # the new owner reads it again

    a.apply("t:0", 1, T0 + 3600 + 5, "a")  # partition 0 passes hour 05; partition 1 has not
    with a.locked():
        a.peek()
        a.sync({"t:0": 2, "t:1": 2})  # partition 1 behind its end: it holds the watermark
    assert a.watermark == T0 + 20 and a.closable() == []
    b.apply("t:1", 2, T0 + 3600 + 9, "b")
    with b.locked():
        b.peek()  # partition 0's file: caught up to its end
        b.sync({"t:0": 2, "t:1": 3})
        assert b.closable() == ["2024-06-01T05"] and b.contents("2024-06-01T05") == {"a": 1, "b": 2}
        b.close("2024-06-01T05", b.contents("2024-06-01T05"))
    with a.locked():
        a.peek()
        a.sync({"t:0": 2, "t:1": 3})
    assert a.closable() == [] and a.announced == {"2024-06-01T05"}  # not a second time


def test_data_applied_for_a_window_another_worker_announced_meanwhile_is_late(tmp_path: Path):
    a, b = owning(tmp_path, "t:0"), WindowState(tmp_path / "state", lateness_s=0)
    b.claim(["t:1"])
    a.apply("t:0", 0, T0 + 10, "a")
    a.apply("t:0", 1, T0 + 3600 + 10, "a")
    with a.locked():
        a.sync(None)
    b.apply("t:1", 0, T0 + 3600 + 20, "b")
    with b.locked():
        b.peek()
        b.sync({"t:0": 2, "t:1": 1})  # all caught up: the watermark is 06:00:20
        [hour_05] = b.closable()
        b.close(hour_05, b.contents(hour_05))
    assert a.apply("t:0", 2, T0 + 30, "a") == "events"  # a's view: hour 05 still open
    with a.locked():
        a.sync(None)
    assert a.counts() == {"events": 3, "late": 1, "rejected": 0, "replayed": 0}
    assert summary(tmp_path / "state")["windows"] == {"2024-06-01T06": {"a": 1, "b": 1}}


def test_a_claim_from_an_older_group_generation_is_refused(tmp_path: Path):
    """A rebalance's callback that ran late (its generation already followed by another's claim)
    does not take the partition back from the worker the newer generation gave it to."""
    a = WindowState(tmp_path / "state", lateness_s=0)
    b = WindowState(tmp_path / "state", lateness_s=0)
    b.claim(["t:0"], generation=5)
    assert a.claim(["t:0"], generation=4) == {"t:0"} and a.parts == {}  # not taken: none held
    assert summary(tmp_path / "state")["owners"] == {"t:0": b.owner}
    assert a.apply("t:0", 0, T0, "a") == "foreign"
