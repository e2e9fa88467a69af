"""The decoder, fuzzed: whatever the bytes, `decode` returns an event or raises EventError with a
known reason, quickly. Bounded (examples and a deadline per input) so it fits in the suite;
derandomized so a run in CI is reproducible. `COORD_FUZZ_EXAMPLES=100000` fuzzes longer locally."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.codec import Codec, _record, decode, encode
from coordinator.errors import EventError
from coordinator.events import Column, CompletionEvent, Status
from tests.bus.badinput import confluent, registry_codec

REASONS = {"undecodable", "unknown_schema_version", "missing_field", "wrong_type", "oversized", "invalid"}
EXAMPLES = int(os.environ.get("COORD_FUZZ_EXAMPLES", "400"))
LONG = os.environ.get("COORD_FUZZ_EXAMPLES") is not None
TIMEOUT = 3600 if LONG else 120  # the bound on a hang, per test
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=1), derandomize=not LONG,
                suppress_health_check=[HealthCheck.too_slow], database=None)
# Building pydantic events is the slow part: fewer, still varied, examples for those.
FUZZ_EVENTS = settings(FUZZ, max_examples=max(EXAMPLES // 3, 1))
CODEC = registry_codec(50_000)

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
# the fields a store keeps in columns of their own hold no NUL (events.KEY_FIELDS)
key_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
column = st.builds(Column, name=text, type=text, nullable=st.booleans())
columns = st.none() | st.lists(column, max_size=4).map(tuple)
events = st.builds(
    CompletionEvent, dataset=key_text.filter(bool), partition=st.none() | key_text,
    status=st.sampled_from(Status), producer=key_text, producer_run_id=st.none() | key_text,
    row_count=st.none() | st.integers(0, 2**63 - 1),
    location=st.none() | text, columns=columns, error=st.none() | text,
    attributes=st.dictionaries(text, text, max_size=4))


def _check(codec: Codec, data: bytes) -> None:
    try:
        event = codec.decode(data)
    except EventError as refused:
        assert refused.reason in REASONS, refused.reason
        return
    assert isinstance(event, CompletionEvent)
    assert codec.decode(codec.encode(event)) == event  # anything accepted is a real event


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _check(CODEC, data)


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(st.sampled_from([b"\xce\x01", b"\xce\x02", b"\xce\x03", b"\x00\x00\x00\x00\x07",
                        b"\x00\x00\x00\x00\x08", b"\x00\x00\x00\x00\x09", b"\x00\x00\x00\x00\x0a"]),
       st.binary(max_size=400))
def test_valid_headers_with_random_bodies(header: bytes, body: bytes) -> None:
    _check(CODEC, header + body)


@pytest.mark.timeout(TIMEOUT)
@FUZZ_EVENTS
@given(events, st.data())
def test_mutated_valid_events(event: CompletionEvent, data: st.DataObject) -> None:
    """Start from real encodings (native and Confluent) and flip, cut or insert bytes."""
    native = bytearray(encode(event))
    framed = bytearray(confluent(9, _record(event)))
    original = data.draw(st.sampled_from([native, framed]))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(original)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and position < len(original):
            original[position] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del original[position:]
        else:
            original[position:position] = data.draw(st.binary(min_size=1, max_size=9))
    _check(CODEC, bytes(original))


FAST, FASTAVRO = Codec(max_bytes=50_000), Codec(max_bytes=50_000, fast=False)


def _outcome(codec: Codec, data: bytes) -> CompletionEvent | str:
    try:
        return codec.decode(data)
    except EventError as refused:
        return refused.reason


@pytest.mark.timeout(TIMEOUT)
@FUZZ_EVENTS
@given(events, st.data())
def test_direct_reader_agrees_with_fastavro(event: CompletionEvent, data: st.DataObject) -> None:
    """The hot-path reader (coordinator/avrofast.py) never accepts what fastavro would read
    differently or refuse. It is stricter on non-canonical Avro that fastavro lets through (a
    boolean byte other than 0/1, a varint longer than 10 bytes): those it refuses as undecodable.
    Valid encodings it accepts are checked by test_every_valid_event_round_trips."""
    original = bytearray(encode(event))
    for _ in range(data.draw(st.integers(0, 3))):
        position = data.draw(st.integers(2, len(original)))
        if position < len(original) and data.draw(st.booleans()):
            original[position] ^= data.draw(st.integers(1, 255))
        else:
            original[position:position] = data.draw(st.binary(min_size=1, max_size=5))
    fast, reference = _outcome(FAST, bytes(original)), _outcome(FASTAVRO, bytes(original))
    if isinstance(fast, CompletionEvent):
        assert fast == reference
    elif isinstance(reference, CompletionEvent):
        assert fast == "undecodable"
    else:
        assert fast in REASONS and reference in REASONS


@pytest.mark.timeout(TIMEOUT)
@FUZZ_EVENTS
@given(events)
def test_every_valid_event_round_trips(event: CompletionEvent) -> None:
    assert FAST.encode(event) == FASTAVRO.encode(event)  # the direct writer writes fastavro's bytes
    assert decode(encode(event)) == event
    assert CODEC.decode(confluent(9, _record(event))) == event


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8)


@pytest.mark.timeout(TIMEOUT)
@FUZZ_EVENTS
@given(st.dictionaries(st.sampled_from([*CompletionEvent.model_fields, "extra"]), json_values, max_size=8))
def test_json_events_are_accepted_or_refused_with_a_reason(payload: dict) -> None:
    """The HTTP path: any JSON object is an event that survives the bus, or an EventError."""
    from coordinator.codec import event_from_json

    try:
        event = event_from_json(payload)
    except EventError as refused:
        assert refused.reason in REASONS
        return
    try:
        assert decode(encode(event)) == event
    except EventError as refused:  # valid for the model, too big for the bus
        assert refused.reason == "oversized"
