"""The poison messages of the intake tests: every kind of bad bus message, each with the reason
it must be dead-lettered with, beside the spec they are checked against."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.bus.base import Message, Producer
from coordinator.codec import decode_dead_letter, encode
from coordinator.events import CompletionEvent
from coordinator.spec.models import DatasetSpec, JobSpec, PipelineSpec

DEFAULT_MAX_EVENT_BYTES = 1_000_000  # settings.max_event_bytes by default
KAFKA_DEFAULT_LIMIT = 1_048_588  # a topic's max.message.bytes by default
ONE_POINT_O_FOUR_MB = 1_040_000  # over max_event_bytes, under the topic limit: it looped forever before
# as large as a message on a default topic gets: its dead letter (value plus the record around it) cannot fit
OVER_DEAD_LETTER_LIMIT = 1_048_300
PRODUCER_ROOM = KAFKA_DEFAULT_LIMIT  # what the test producer must be able to send for those


def spec(command: list[str] | None = None) -> PipelineSpec:
    return PipelineSpec(
        datasets={
            "raw.orders": DatasetSpec(partitioning="daily"),
            "raw.clicks": DatasetSpec(partitioning="hourly"),
            "raw.regions": DatasetSpec(partitioning={"static": ["eu", "us"]}),
            "raw.fx": DatasetSpec(),
        },
        jobs={
            "count_orders": JobSpec(
                kind="command",
                inputs=[{"dataset": "raw.orders"}],
                outputs=["mart.orders"],
                settings={"command": command or ["true"]},
            )
        },
    )


SPEC_YAML = """\
datasets:
  raw.orders: {partitioning: daily}
  raw.clicks: {partitioning: hourly}
  raw.regions: {partitioning: {static: [eu, us]}}
  raw.fx: {}
jobs:
  count_orders:
    kind: command
    inputs: [raw.orders]
    outputs: [mart.orders]
    settings: {command: [sh, -c, 'echo {partition} >> %s']}
"""


@dataclass(frozen=True)
class Poison:
    name: str
    key: bytes | None
    value: bytes | None
    reason: str


def _event(dataset: str, partition: str | None) -> bytes:
    return encode(CompletionEvent(dataset=dataset, partition=partition, producer="poison-test"))


def unchecked(**fields: object) -> bytes:
    """An event the model would refuse, encoded as a producer of another build could send it."""
    values = {"dataset": "raw.orders", "partition": "2025-01-01", "producer": "poison-test", **fields}
    return encode(CompletionEvent.model_construct(**values))


# a NUL character in a field the store keeps in a column of its own: PostgreSQL's text refuses it
# (the transaction failed on every restart, and the good events behind it waited for good)
NUL_POISON = [
    ("NUL in event_id", {"event_id": "id\x00nul"}),
    ("NUL in partition", {"partition": "2025-01-01\x00"}),
    ("NUL in producer", {"producer": "\x00"}),
    ("NUL in producer_run_id", {"producer_run_id": "run\x00"}),
]


def poison(max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> list[Poison]:
    """Every bad message, in the order they are produced."""
    padded = _event("raw.orders", "2025-01-01")
    return [
        Poison("tombstone", b"raw.orders", None, "tombstone"),
        Poison("empty value", b"raw.orders", b"", "undecodable"),
        Poison("garbage", b"raw.orders", b"\x17\x00garbage \xff\xfe not an event", "undecodable"),
        Poison(
            "just over max_event_bytes",
            b"raw.orders",
            padded + b"\x00" * (max_event_bytes + 1 - len(padded)),
            "oversized",
        ),
        Poison("1.04 MB", b"raw.orders", b"\xab" * ONE_POINT_O_FOUR_MB, "oversized"),
        Poison(
            "over the dead-letter topic's limit",
            b"raw.orders",
            bytes(range(256)) * (OVER_DEAD_LETTER_LIMIT // 256) + b"!" * (OVER_DEAD_LETTER_LIMIT % 256),
            "oversized",
        ),
        Poison(
            "unknown dataset",
            b"nobody.declares.this",
            _event("nobody.declares.this", "2025-01-01"),
            "unknown_dataset",
        ),
        Poison("daily key 2025-13-45", b"raw.orders", _event("raw.orders", "2025-13-45"), "bad_partition"),
        Poison("daily key 'yesterday'", b"raw.orders", _event("raw.orders", "yesterday"), "bad_partition"),
        Poison("daily without a key", b"raw.orders", _event("raw.orders", None), "bad_partition"),
        Poison("hourly key for daily", b"raw.orders", _event("raw.orders", "2025-01-01T05"), "bad_partition"),
        Poison("daily key for hourly", b"raw.clicks", _event("raw.clicks", "2025-01-01"), "bad_partition"),
        Poison("hour 24", b"raw.clicks", _event("raw.clicks", "2025-01-01T24"), "bad_partition"),
        Poison("not a static key", b"raw.regions", _event("raw.regions", "fr"), "bad_partition"),
        Poison("key for unpartitioned", b"raw.fx", _event("raw.fx", "2025-01-01"), "bad_partition"),
        *(Poison(name, b"raw.orders", unchecked(**fields), "invalid") for name, fields in NUL_POISON),
    ]


GOOD = CompletionEvent(dataset="raw.orders", partition="2025-01-02", producer="poison-test", row_count=7)


def produce_all(producer: Producer, topic: str, items: list[Poison]) -> None:
    for item in items:
        producer.produce(topic, item.value, key=item.key)  # type: ignore[arg-type]  # None: a tombstone
    producer.produce(topic, encode(GOOD), key=GOOD.dataset.encode())
    producer.flush(60)


def read_dead_letters(messages: list[Message]) -> list[dict]:
    return [decode_dead_letter(m.value) for m in messages]
