"""Stream worker throughput and close latency on the real Kafka broker at $KAFKA_BOOTSTRAP_SERVERS.

Produces N clicks spread over one day on a 2-partition topic, then, in one run:
  - the raw consumer rate: aiokafka (faust's client) reading the N messages in the worker's
    interpreter (.venv-stream), no decoding;
  - the worker's rate: coordinator/streamjob.py from its first to its N-th applied click
    (its saved state says how many it applied);
  - the close latency: with the worker caught up, one click at a time that moves the watermark
    past the next window's end, timed from its send to the window's completion event on the
    events topic (the watermark's own delay, the lateness, is not in it).
The last line is one JSON object: raw_events_per_s, worker_events_per_s, close_latency_ms_p50
and _max.

    python bench/stream.py [--events 20000] [--closes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from coordinator.kinds.stream import DEFAULT_PYTHON, REPO_ROOT
from coordinator.launchers.stream import free_port
from coordinator.streamstate import summary

DAY = 1717200000  # 2024-06-01T00:00Z
RAW_CONSUMER = """
import asyncio, sys, time
from aiokafka import AIOKafkaConsumer
async def main(topic, servers, n):
    c = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id="raw-" + str(time.time()),
                         auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    seen, first = 0, None
    while seen < n:
        batch = await c.getmany(timeout_ms=10000, max_records=10000)
        if not batch:
            break
        if first is None:
            first = time.perf_counter()
        seen += sum(len(v) for v in batch.values())
    print(seen, time.perf_counter() - first)
    await c.stop()
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def applied(run_dir: Path) -> int:
    return sum(summary(run_dir / "state").get("counts", {}).values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--closes", type=int, default=10)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    if not bootstrap.startswith(("127.0.0.1", "localhost", "[::1]")):
        print(f"refusing a non-local broker: {bootstrap}", file=sys.stderr)
        return 2
    if not DEFAULT_PYTHON.exists():
        print(f"{DEFAULT_PYTHON} is missing: run scripts/bootstrap stream", file=sys.stderr)
        return 2
    tag = uuid.uuid4().hex[:8]
    clicks, events = f"bench-clicks-{tag}", f"bench-events-{tag}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for topic, partitions in ((clicks, 2), (events, 1)):
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(
            30
        )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    n = args.events
    for i in range(n):  # one day, the last hour's clicks leave 23 windows closed (lateness 600 s)
        value = json.dumps({"ts": DAY + i * 86400 / n, "user_id": f"u{i % 50}"}).encode()
        producer.produce(clicks, value, partition=i % 2)
    producer.flush(60)

    raw = subprocess.run(
        [str(DEFAULT_PYTHON), "-c", RAW_CONSUMER, clicks, bootstrap, str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    raw_rate = int(raw[0]) / float(raw[1])

    run_dir = Path(tempfile.mkdtemp(prefix=f"coord-bench-stream-{tag}-"))
    config = {
        "run_dir": str(run_dir),
        "job": "bench",
        "dataset": "stream.clicks",
        "output": str(run_dir / "windows" / "{partition}"),
        "lateness_s": 600,
        "topics_dir": str(REPO_ROOT / "topics"),
        "time_field": "ts",
        "key_field": "user_id",
        "group": f"bench-{tag}",
        "bootstrap": bootstrap,
        "web_port": free_port(),
        "topic": clicks,
        "events_topic": events,
        "parent_pid": os.getpid(),
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    with open(run_dir / "log", "wb") as log:
        worker = subprocess.Popen(
            [str(DEFAULT_PYTHON), "-m", "coordinator.streamjob", str(run_dir / "config.json")],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            cwd=run_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        first = None
        deadline = time.monotonic() + 600
        while (done := applied(run_dir)) < n and time.monotonic() < deadline:
            if done and first is None:
                first = (time.perf_counter(), done)
            time.sleep(0.02)
        if first is None or done < n:
            print(f"the worker applied {done} of {n} clicks; see {run_dir / 'log'}", file=sys.stderr)
            return 1
        worker_rate = (n - first[1]) / (time.perf_counter() - first[0])

        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-{tag}-close", "auto.offset.reset": "latest"}
        )
        consumer.subscribe([events])
        consumer.poll(2)  # join the group before the first close is sent
        latencies = []
        for k in range(args.closes):
            window_end = DAY + (24 + k) * 3600  # the next window closes once a click is 600 s past it
            sent = time.perf_counter()
            producer.produce(
                clicks, json.dumps({"ts": window_end + 600, "user_id": "close"}).encode(), partition=0
            )
            producer.flush(10)
            while time.perf_counter() - sent < 30:
                message = consumer.poll(0.5)
                if message is not None and not message.error():
                    latencies.append((time.perf_counter() - sent) * 1000)
                    break
        consumer.close()
    finally:
        worker.terminate()
        worker.wait(30)
        admin.delete_topics([clicks, events])
    result = {
        "events": n,
        "raw_events_per_s": round(raw_rate),
        "worker_events_per_s": round(worker_rate),
        "close_latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "close_latency_ms_max": round(max(latencies), 1) if latencies else None,
        "closes_timed": len(latencies),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
