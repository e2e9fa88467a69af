"""Bus throughput on the real Kafka broker at $KAFKA_BOOTSTRAP_SERVERS (127.0.0.1 only).

Publishes N completion events through the project's Publisher (encode + idempotent, acks=all
producer), then reads the same topic, several rounds with fresh consumer groups, in an order
that turns each round:
  - raw: the fastest raw consumer, confluent-kafka's batched consume(num_messages=...) with the
    same settings, no decoding (consume_raw says why it asks for no more than is left);
  - transport: the project's Kafka consumer alone (bus/kafka.py), handing over its Messages,
    nothing decoded;
  - project: the project's whole consume path, EventIntake (consume + decode + validation into
    CompletionEvents, admission of nothing as no spec is given);
(what exists before the rounds frozen out of the cyclic collector's reach, as the serving
coordinator does: see main) and, in this process without the broker, over the very bytes on
the topic:
  - decode: the project's Codec.decode (validation included), per message;
  - bare decode: fastavro's schemaless_reader with the parsed schema into a dict, per message.
Prints the figures per round, and as its last line one JSON object with the medians:
publish_events_per_s, consume_events_per_s, raw_consume_events_per_s, consume_ratio (the whole
path against raw, the median of the per-round ratios), transport_events_per_s, transport_ratio,
decode_us_per_event, bare_decode_us_per_event, decode_ratio (bare / project: 1 is as fast), and
the CPU time per event of each consumer.

    python bench/bus.py [--events 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from io import BytesIO

import fastavro
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from coordinator.bus.base import TopicSpec
from coordinator.bus.kafka import CONSUMER_DEFAULTS, KafkaBus
from coordinator.codec import Codec, load_schema
from coordinator.events import Column, CompletionEvent
from coordinator.intake import EventIntake
from coordinator.publish import Publisher
from coordinator.settings import Settings

RAW_BATCH = 10_000  # messages a raw consume() call may return


def make_events(n: int) -> list[CompletionEvent]:
    columns = (Column(name="user_id", type="bigint", nullable=False), Column(name="score", type="double"))
    now = datetime.now(UTC)
    return [
        CompletionEvent(
            dataset=f"bench.dataset_{i % 50}",
            partition=f"2024-06-{1 + i % 28:02d}",
            producer="bench",
            producer_run_id=f"run-{i // 1000}",
            produced_at=now,
            row_count=i,
            location=f"s3://lake/bench/{i % 50}",
            columns=columns,
            attributes={"i": str(i)},
        )
        for i in range(n)
    ]


def publish(bus: KafkaBus, settings: Settings, events: list[CompletionEvent]) -> float:
    with Publisher(bus, settings) as publisher:
        start = time.perf_counter()
        for event in events:
            publisher.publish(event)
        publisher.flush(120)
        return len(events) / (time.perf_counter() - start)


def timed(poll: Callable[[int, float], int], n: int) -> tuple[float, float]:
    """(events/s, CPU µs per event) of `poll(at_most, timeout)` (returning how many it took) until
    `n`, after the first message: joining the group and the first fetch are not counted."""
    seen = 0
    while seen < 1:
        seen += poll(1, 30)
    start, cpu = time.perf_counter(), time.process_time()
    while seen < n:
        got = poll(n - seen, 5)
        if not got:
            raise RuntimeError(f"consumer stalled at {seen}/{n}")
        seen += got
    return (n - 1) / (time.perf_counter() - start), (time.process_time() - cpu) / (n - 1) * 1e6


def consume_project(bus: KafkaBus, settings: Settings, n: int) -> tuple[float, float]:
    with EventIntake(bus, settings, group_id=f"bench-{uuid.uuid4().hex}") as intake:
        return timed(lambda most, timeout: len(intake.poll(min(most, 1000), timeout).events), n)


def consume_transport(bus: KafkaBus, topic: str, n: int) -> tuple[float, float]:
    """The project's Kafka consumer alone: its Messages handed over, nothing decoded."""
    with bus.consumer(f"transport-{uuid.uuid4().hex}", [topic]) as consumer:
        return timed(lambda most, timeout: len(consumer.poll(min(most, 1000), timeout)), n)


def decode_costs(values: list[bytes], rounds: int) -> tuple[float, float]:
    """(µs per message of Codec.decode, of fastavro's bare schemaless_reader), over `values`:
    the best of `rounds`, alternating, the cyclic collector paused as in a frozen serving loop."""
    codec, schema = Codec(), load_schema("completion_event", 2)
    read = fastavro.schemaless_reader

    def project() -> None:
        decode = codec.decode
        for value in values:
            decode(value)

    def bare() -> None:
        for value in values:
            buffer = BytesIO(value)
            buffer.seek(2)
            read(buffer, schema, None)

    best = {project: float("inf"), bare: float("inf")}
    gc.disable()
    try:
        for r in range(rounds):
            for fn in (project, bare) if r % 2 == 0 else (bare, project):
                cpu = time.process_time()
                fn()
                best[fn] = min(best[fn], (time.process_time() - cpu) / len(values) * 1e6)
    finally:
        gc.enable()
    return best[project], best[bare]


def consume_raw(bootstrap: str, topic: str, n: int, batch: int = RAW_BATCH) -> tuple[float, float]:
    """The fastest raw consumer: confluent-kafka's batched consume(num_messages=...) with the
    project's consumer settings, no decoding, messages counted only. It asks for at most what is
    still to come: consume(num_messages, timeout) returns when that many arrived or the timeout
    passed, so asking for more than the topic holds waits the whole timeout at its end (which
    the earlier baseline did: five seconds charged to it, a consume ratio of 2.5)."""
    config = {"bootstrap.servers": bootstrap, **CONSUMER_DEFAULTS, "group.id": f"raw-{uuid.uuid4().hex}"}
    consumer = Consumer(config)
    consumer.subscribe([topic])

    def poll(most: int, timeout: float) -> int:
        return sum(
            1 for m in consumer.consume(num_messages=min(batch, most), timeout=timeout) if m.error() is None
        )

    try:
        return timed(poll, n)
    finally:
        consumer.close()


def topic_values(bootstrap: str, topic: str, n: int) -> list[bytes]:
    """The `n` values on `topic` (for the decode figures: the very bytes the consumers read)."""
    config = {"bootstrap.servers": bootstrap, **CONSUMER_DEFAULTS, "group.id": f"values-{uuid.uuid4().hex}"}
    consumer = Consumer(config)
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        while len(values) < n:
            messages = consumer.consume(num_messages=min(RAW_BATCH, n - len(values)), timeout=30)
            if not messages:
                raise RuntimeError(f"read {len(values)}/{n} values")
            values.extend(m.value() for m in messages if m.error() is None)
    finally:
        consumer.close()
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    if not all(h.split(":")[0] in ("127.0.0.1", "localhost") for h in bootstrap.split(",")):
        print(f"refusing a non-local broker: {bootstrap}", file=sys.stderr)
        return 2
    topic = f"bench-bus-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        bus="kafka", kafka_bootstrap_servers=bootstrap, topic_events=topic, topic_dead_letter=f"{topic}-dl"
    )
    bus = KafkaBus(bootstrap)
    bus.ensure_topics([TopicSpec(topic, 3), TopicSpec(f"{topic}-dl", 1)])
    try:
        events = make_events(args.events)
        publish(bus, settings, events[: max(1, args.events // 10)])  # warm-up (also read by the consumers)
        publish_rates = [publish(bus, settings, events)]
        # The published events are the bench's scaffolding, not the consumer's: drop them so the
        # consumers' garbage collections do not walk them (the raw consumer allocates too little
        # to trigger any, so keeping them would charge the project's consumer alone).
        del events
        gc.collect()
        # As the serving coordinator does once it has started (Coordinator(freeze_gc=True)): what
        # exists now is out of the collector's reach, else each full collection walks every
        # module's objects, ~3 us per event decoded here (measured), none of it the consumer's.
        gc.freeze()
        total = args.events + max(1, args.events // 10)
        measure = {
            "raw": lambda: consume_raw(bootstrap, topic, total),
            "transport": lambda: consume_transport(bus, topic, total),
            "project": lambda: consume_project(bus, settings, total),
        }
        rates: dict[str, list[float]] = {k: [] for k in measure}
        cpus: dict[str, list[float]] = {k: [] for k in measure}
        names = list(measure)
        for r in range(args.rounds):
            for which in names[r % 3 :] + names[: r % 3]:  # each goes first in turn
                rate, cpu = measure[which]()
                rates[which].append(rate)
                cpus[which].append(cpu)
            print(
                f"round {r + 1}: "
                + "  ".join(f"{k} {rates[k][-1]:,.0f}/s ({cpus[k][-1]:.2f} us CPU/event)" for k in names)
                + f"  project/raw {rates['project'][-1] / rates['raw'][-1]:.3f}"
                f"  transport/raw {rates['transport'][-1] / rates['raw'][-1]:.3f}",
                file=sys.stderr,
            )
        decode_us, bare_us = decode_costs(topic_values(bootstrap, topic, total), max(3, args.rounds))
        print(
            f"decode: project {decode_us:.2f} us/event (Avro + validation into an event), fastavro bare"
            f" {bare_us:.2f} us/event (into a dict)",
            file=sys.stderr,
        )
        print(
            f"publish {publish_rates[0]:,.0f} events/s ({args.events} events, encode + flush)",
            file=sys.stderr,
        )
    finally:
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic, f"{topic}-dl"])

    def ratio(of: str) -> float:
        return round(statistics.median(p / r for p, r in zip(rates[of], rates["raw"], strict=True)), 3)

    result = {
        "events": total,
        "rounds": args.rounds,
        "publish_events_per_s": round(publish_rates[0]),
        "consume_events_per_s": round(statistics.median(rates["project"])),
        "raw_consume_events_per_s": round(statistics.median(rates["raw"])),
        "consume_ratio": ratio("project"),
        "transport_events_per_s": round(statistics.median(rates["transport"])),
        "transport_ratio": ratio("transport"),
        "decode_us_per_event": round(decode_us, 2),
        "bare_decode_us_per_event": round(bare_us, 2),
        "decode_ratio": round(bare_us / decode_us, 3),
        # CPU time of this process per event (librdkafka's threads included): what the rates
        # above turn into on a machine where the broker is not the bottleneck.
        "consume_cpu_us_per_event": round(statistics.median(cpus["project"]), 2),
        "transport_cpu_us_per_event": round(statistics.median(cpus["transport"]), 2),
        "raw_consume_cpu_us_per_event": round(statistics.median(cpus["raw"]), 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
