"""Bus throughput on the real Kafka broker at $KAFKA_BOOTSTRAP_SERVERS (127.0.0.1 only).

Publishes N completion events through the project's Publisher (encode + idempotent, acks=all
producer), then reads the same topic, several rounds with fresh consumer groups, alternately:
  - through the project's EventIntake (consume + decode + validation into CompletionEvents),
  - through the fastest raw consumer: confluent-kafka's batched consume(num_messages=...) with
    the same settings, no decoding (consume_raw says why it asks for no more than is left).
Prints the figures per round, and as its last line one JSON object with the medians:
publish_events_per_s, consume_events_per_s, raw_consume_events_per_s, consume_ratio (the
median of the per-round ratios), and the CPU time per event of each consumer.

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
from datetime import UTC, datetime

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from coordinator.bus.base import TopicSpec
from coordinator.bus.kafka import CONSUMER_DEFAULTS, KafkaBus
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


def consume_project(bus: KafkaBus, settings: Settings, n: int) -> tuple[float, float]:
    with EventIntake(bus, settings, group_id=f"bench-{uuid.uuid4().hex}") as intake:
        batch = intake.poll(1, 30)  # join the group and get the first message before timing
        seen = len(batch.events)
        start, cpu = time.perf_counter(), time.process_time()
        while seen < n:
            batch = intake.poll(1000, 5)
            if not batch.messages:
                raise RuntimeError(f"project consumer stalled at {seen}/{n}")
            seen += len(batch.events)
        return (n - 1) / (time.perf_counter() - start), (time.process_time() - cpu) / (n - 1) * 1e6


def consume_raw(bootstrap: str, topic: str, n: int, batch: int = RAW_BATCH) -> tuple[float, float]:
    """The fastest raw consumer: confluent-kafka's batched consume(num_messages=...) with the
    project's consumer settings, no decoding, messages counted only. It asks for at most what is
    still to come: consume(num_messages, timeout) returns when that many arrived or the timeout
    passed, so asking for more than the topic holds waits the whole timeout at its end (which
    the earlier baseline did: five seconds charged to it, a consume ratio of 2.5)."""
    config = {"bootstrap.servers": bootstrap, **CONSUMER_DEFAULTS, "group.id": f"raw-{uuid.uuid4().hex}"}
    consumer = Consumer(config)
    consumer.subscribe([topic])
    try:
        seen = 0
        while seen < 1:
            seen += sum(1 for m in consumer.consume(num_messages=1, timeout=30) if m.error() is None)
        start, cpu = time.perf_counter(), time.process_time()
        while seen < n:
            messages = consumer.consume(num_messages=min(batch, n - seen), timeout=5)
            if not messages:
                raise RuntimeError(f"raw consumer stalled at {seen}/{n}")
            seen += sum(1 for m in messages if m.error() is None)
        return (n - 1) / (time.perf_counter() - start), (time.process_time() - cpu) / (n - 1) * 1e6
    finally:
        consumer.close()


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
        total = args.events + max(1, args.events // 10)
        project, raw, project_cpu, raw_cpu = [], [], [], []
        for r in range(args.rounds):
            order = ("raw", "project") if r % 2 == 0 else ("project", "raw")
            for which in order:
                if which == "raw":
                    rate, cpu = consume_raw(bootstrap, topic, total)
                    raw.append(rate)
                    raw_cpu.append(cpu)
                else:
                    rate, cpu = consume_project(bus, settings, total)
                    project.append(rate)
                    project_cpu.append(cpu)
            print(
                f"round {r + 1}: project {project[-1]:,.0f}/s ({project_cpu[-1]:.1f} us CPU/event)  "
                f"raw {raw[-1]:,.0f}/s ({raw_cpu[-1]:.1f} us CPU/event)  ratio {project[-1] / raw[-1]:.2f}",
                file=sys.stderr,
            )
        print(
            f"publish {publish_rates[0]:,.0f} events/s ({args.events} events, encode + flush)",
            file=sys.stderr,
        )
    finally:
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic, f"{topic}-dl"])
    result = {
        "events": total,
        "rounds": args.rounds,
        "publish_events_per_s": round(publish_rates[0]),
        "consume_events_per_s": round(statistics.median(project)),
        "raw_consume_events_per_s": round(statistics.median(raw)),
        "consume_ratio": round(statistics.median(p / r for p, r in zip(project, raw, strict=True)), 3),
        # CPU time of this process per event (librdkafka's threads included): what the rates
        # above turn into on a machine where the broker is not the bottleneck.
        "consume_cpu_us_per_event": round(statistics.median(project_cpu), 1),
        "raw_consume_cpu_us_per_event": round(statistics.median(raw_cpu), 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
