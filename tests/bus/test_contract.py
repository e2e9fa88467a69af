"""The bus contract (coordinator/bus/base.py), run on both adapters through the `case` fixture:
round trip of every field, per-key order, redelivery of what was not committed (consumer closed
or killed), dead-lettering of each kind of bad input, and the accounting identity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

from coordinator.codec import decode_dead_letter
from coordinator.events import Column, CompletionEvent, Status
from tests.bus.badinput import bad_values, registry_codec
from tests.bus.conftest import BusCase, drain


def _event(i: int, dataset: str = "shop.orders") -> CompletionEvent:
    return CompletionEvent(dataset=dataset, partition=f"2024-06-{1 + i % 28:02d}", row_count=i,
                           producer="test", attributes={"seq": str(i)})


def _dead_letters(case: BusCase, expected: int) -> list[dict]:
    records = []
    with case.bus.consumer(case.settings.consumer_group + "-dlq", [case.settings.topic_dead_letter]) as c:
        for _ in range(120):
            records += [decode_dead_letter(m.value) for m in c.poll(500, 0.5)]
            if len(records) >= expected:
                break
    return records


def test_raw_message_round_trip(case: BusCase) -> None:
    topic = case.settings.topic_events
    with case.bus.producer() as producer:
        producer.produce(topic, b"\x00\xffvalue", key=b"k1", headers=[("h1", b"\x01\x02"), ("h2", b"")])
    with case.bus.consumer(case.settings.consumer_group, [topic]) as consumer:
        got = []
        for _ in range(60):
            got += consumer.poll(10, 0.5)
            if got:
                break
    assert len(got) == 1
    m = got[0]
    assert (m.topic, m.key, m.value, m.offset) == (topic, b"k1", b"\x00\xffvalue", 0)
    assert m.headers == (("h1", b"\x01\x02"), ("h2", b""))
    assert m.timestamp_ms > 0


def test_event_round_trip_every_field(case: BusCase) -> None:
    full = CompletionEvent(
        event_id="e-1", dataset="dbt.reporting.user_features", partition="2024-06-01",
        status=Status.FAILED, producer="dbt", producer_run_id="run-42",
        produced_at=datetime(2024, 6, 1, 3, 4, 5, 123456, tzinfo=UTC), row_count=123_456_789_012,
        location="s3://lake/features/dt=2024-06-01", error="model failed: division by zero",
        columns=(Column(name="user_id", type="bigint", nullable=False), Column(name="score", type="double")),
        attributes={"team": "growth", "ünïcode": "✓"})
    bare = CompletionEvent(dataset="fivetran.app.users")
    with case.publisher() as publisher:
        publisher.publish_many([full, bare])
        publisher.flush()
    with case.intake() as intake:
        batch = drain(intake, 2)
    assert batch.dead_lettered == 0
    by_id = {e.event_id: e for e in batch.events}
    assert by_id["e-1"] == full
    assert by_id[bare.event_id] == bare
    for name in CompletionEvent.model_fields:
        assert getattr(by_id["e-1"], name) == getattr(full, name), name
    assert by_id[bare.event_id].partition is None and by_id[bare.event_id].columns is None
    assert {m.key for m in batch.messages} == {b"dbt.reporting.user_features", b"fivetran.app.users"}


def test_order_per_dataset_key(case: BusCase) -> None:
    datasets = [f"ds.{k}" for k in range(6)]
    events = [_event(i, datasets[i % len(datasets)]) for i in range(600)]
    with case.publisher() as publisher:
        for e in events:
            publisher.publish(e)
    with case.intake() as intake:
        batch = drain(intake, len(events))
    assert len(batch.events) == len(events)
    partitions: dict[str, set[int]] = {}
    seen: dict[str, list[int]] = {}
    for message, event in zip(batch.messages, batch.events, strict=True):
        partitions.setdefault(event.dataset, set()).add(message.partition)
        seen.setdefault(event.dataset, []).append(int(event.attributes["seq"]))
    assert all(len(p) == 1 for p in partitions.values())
    assert len(set().union(*partitions.values())) > 1, "keys should spread over partitions"
    for dataset in datasets:
        assert seen[dataset] == sorted(seen[dataset]) and len(seen[dataset]) == 100


def test_uncommitted_events_are_redelivered_after_close(case: BusCase) -> None:
    events = [_event(i) for i in range(50)]
    with case.publisher() as publisher:
        publisher.publish_many(events)
    with case.intake() as first:
        taken = drain(first, len(events), commit=False)
    assert len(taken.events) == len(events)
    with case.intake() as second:
        again = drain(second, len(events))
    assert [e.event_id for e in again.events] == [e.event_id for e in events]
    # Committed now: a third consumer of the group sees only what comes next.
    marker = _event(999, "marker")
    with case.publisher() as publisher:
        publisher.publish(marker)
    with case.intake() as third:
        rest = drain(third, 1)
    assert [e.event_id for e in rest.events] == [marker.event_id]


_CHILD = textwrap.dedent("""
    import sys, time
    from coordinator.bus.factory import open_bus
    from coordinator.intake import EventIntake
    from coordinator.settings import Settings

    settings = Settings()
    intake = EventIntake(open_bus(settings), settings)
    seen = 0
    while seen < int(sys.argv[1]):
        seen += len(intake.poll(500, 0.5).events)
    print("polled", seen, flush=True)
    time.sleep(600)
""")


def test_uncommitted_events_are_redelivered_after_kill(case: BusCase) -> None:
    events = [_event(i) for i in range(40)]
    with case.publisher() as publisher:
        publisher.publish_many(events)
    env = {**os.environ, **case.env()}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(len(events))], cwd=case.workdir, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip() == f"polled {len(events)}", line
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    with case.intake() as intake:
        again = drain(intake, len(events), timeout=90)
    assert sorted(e.event_id for e in again.events) == sorted(e.event_id for e in events)


def test_each_kind_of_bad_input_is_dead_lettered_with_its_reason(case: BusCase) -> None:
    bad = bad_values(case.settings.max_event_bytes)
    good = _event(1)
    topic = case.settings.topic_events
    with case.publisher() as publisher:
        for value in bad.values():
            publisher.producer.produce(topic, value, key=b"bad")
        publisher.publish(good)
    with case.intake(codec=registry_codec(case.settings.max_event_bytes)) as intake:
        batch = drain(intake, len(bad) + 1)
    assert [e.event_id for e in batch.events] == [good.event_id]
    assert batch.dead_lettered == len(bad)
    source = {m.value: m for m in batch.messages}
    records = _dead_letters(case, len(bad))
    assert sorted(r["reason"] for r in records) == sorted(bad)
    for record in records:
        assert record["value"] == bad[record["reason"]]
        original = source[record["value"]]
        assert (record["source_topic"], record["source_partition"], record["source_offset"]) == (
            original.topic, original.partition, original.offset)
        assert record["key"] == b"bad" and record["consumer_group"] == case.settings.consumer_group


def test_accounting_identity_over_a_mixed_stream(case: BusCase) -> None:
    total, good_ids, bad_count = 3000, set(), 0
    topic = case.settings.topic_events
    kinds = list(bad_values(case.settings.max_event_bytes))
    with case.publisher() as publisher:
        for i in range(total):
            if i % 9 == 4:
                value = bad_values(case.settings.max_event_bytes, i)[kinds[bad_count % len(kinds)]]
                publisher.producer.produce(topic, value, key=f"ds.{i % 13}".encode())
                bad_count += 1
            else:
                event = _event(i, f"ds.{i % 13}")
                good_ids.add(event.event_id)
                publisher.publish(event)
    with case.intake(codec=registry_codec(case.settings.max_event_bytes)) as intake:
        batch = drain(intake, total, timeout=120)
    assert len(batch.messages) == total
    assert len(batch.events) + batch.dead_lettered == total
    assert {e.event_id for e in batch.events} == good_ids
    assert batch.dead_lettered == bad_count
    assert len(_dead_letters(case, bad_count)) == bad_count


def test_skip_by_event_id_header_leaves_messages_undecoded(case: BusCase) -> None:
    """The publisher puts each event's id in a header; a `skip` that claims an id leaves that
    message undecoded (still in the batch, so its offset is committed) and counts it."""
    events = [_event(i) for i in range(20)]
    mine = {e.event_id.encode() for e in events[::2]}
    asked: list[bytes] = []

    def skip(event_id: bytes) -> bool:
        asked.append(event_id)
        return event_id in mine

    with case.publisher() as publisher:
        publisher.publish_many(events)
        publisher.flush()
    with case.intake() as intake:
        got, messages, skipped = [], 0, 0
        for _ in range(120):
            batch = intake.poll(50, 0.5, skip)
            intake.commit(batch)
            got += batch.events
            messages += len(batch.messages)
            skipped += batch.skipped
            assert len(batch.messages) == len(batch.events) + batch.dead_lettered + batch.skipped
            if messages >= len(events):
                break
    assert sorted(asked) == sorted(e.event_id.encode() for e in events)
    assert skipped == len(mine) == 10
    assert [e.event_id for e in got] == [e.event_id for e in events[1::2]]


def test_a_replayed_bad_message_is_not_dead_lettered_twice(case: BusCase) -> None:
    """Taken, dead-lettered, not committed (a crash before the offsets moved): the next member of
    the group gets it again, counts it as dead-lettered, and writes no second dead letter."""
    bad = bad_values(case.settings.max_event_bytes)
    topic = case.settings.topic_events
    with case.publisher() as publisher:
        for value in bad.values():
            publisher.producer.produce(topic, value, key=b"bad")
        publisher.publish(_event(1))
    for _ in range(2):
        with case.intake(codec=registry_codec(case.settings.max_event_bytes)) as intake:
            batch = drain(intake, len(bad) + 1, commit=False)
        assert (len(batch.events), batch.dead_lettered) == (1, len(bad))
    # every dead letter is durable before poll returns: read them all, then make sure no more come
    dlq = [case.settings.topic_dead_letter]
    with case.bus.consumer(case.settings.consumer_group + "-dlq", dlq) as reader:
        taken: list = []
        for _ in range(120):
            taken += reader.poll(500, 0.5)
            if len(taken) >= len(bad):
                break
        taken += reader.poll(500, 2.0)
    assert sorted(decode_dead_letter(m.value)["reason"] for m in taken) == sorted(bad)


def test_a_dead_letter_interrupted_by_a_crash_is_written_once(case: BusCase) -> None:
    """A process died with two refused messages booked pending: the first one's dead letter had
    reached the topic (killed before it was settled), the second one's had not (killed before it
    was sent). The next member of the group writes only the second, and settles both."""
    from coordinator.deadletter import REASON_HEADER, dead_letter_record
    from coordinator.errors import EventError
    from coordinator.store.deadletters import PENDING, WRITTEN, DeadLetterBook, DeadLetterRow
    from coordinator.store.store import StateStore

    topic, group = case.settings.topic_events, case.settings.consumer_group
    with case.publisher() as publisher:
        publisher.producer.produce(topic, b"\x17first", key=b"bad")
        publisher.producer.produce(topic, b"\x17second", key=b"bad")
    with case.bus.consumer(group + "-peek", [topic]) as peek:
        messages = _dead_letter_messages_of(peek, 2)
    case.settings.home.mkdir(parents=True, exist_ok=True)
    with StateStore(case.settings.resolved_state_url()) as store:
        book = DeadLetterBook(store)
        pending = [DeadLetterRow(m.topic, m.partition, m.offset, "undecodable", "", 1, None, PENDING)
                   for m in messages]
        book.record(group, pending, 0.0)
        first = next(m for m in messages if m.value == b"\x17first")
        _, data = dead_letter_record(first, EventError("undecodable", "before the crash"), group, None)
        with case.bus.producer() as producer:  # what the killed process had sent
            producer.produce(case.settings.topic_dead_letter, data, key=topic.encode(),
                             headers=[(REASON_HEADER, b"undecodable")])
        with case.intake() as intake:
            batch = drain(intake, 2)
        assert batch.dead_lettered == 2
        assert {r["state"] for r in book.rows(group)} == {WRITTEN}
    dlq = [case.settings.topic_dead_letter]
    with case.bus.consumer(group + "-dlq", dlq) as reader:
        records = [decode_dead_letter(m.value) for m in _dead_letter_messages_of(reader, 2)]
        records += [decode_dead_letter(m.value) for m in reader.poll(500, 2.0)]
    assert sorted(r["value"] for r in records) == [b"\x17first", b"\x17second"]


def _dead_letter_messages_of(consumer, expected: int) -> list:
    taken: list = []
    for _ in range(120):
        taken += consumer.poll(500, 0.5)
        if len(taken) >= expected:
            break
    return taken
