"""The serving coordinator's memory over a long run on Kafka + PostgreSQL: does it level off?

A coordinator process serves bench/latency.py's spec (1,000 jobs, the stub launcher keeping
nothing per run, as in bench/scale.py) on a fresh topic and database; events are published in
chunks of --chunk (each makes one run), and after each chunk has been launched the process's
memory is read:
- rss_mb (VmRSS) and, after asking the process to hand free heap pages back to the system
  (glibc's malloc_trim, on SIGUSR1), trimmed_mb: the difference is memory malloc keeps free;
- heap_mb, the bytes malloc has handed out and not had back (mallinfo2: in use, every arena);
- the librdkafka queues (its statistics): messages and bytes pre-fetched by the consumer and
  not yet taken, and those in the producer's queue.
growth_mb_per_100k is RSS growth per 100,000 events from after --warm events to the end;
late_growth_mb_per_100k the same over the run's second half, which is ~0 once memory is bounded.
Each reading waits until the coordinator's own events have come back too (settled). The level
RSS settles at follows the largest burst the process has served (its batches, the output events
queued to the producer, what malloc keeps of them): measured, ~125 MB after chunks of 20,000,
~150 MB after chunks of 50,000, level from then on in both (so compare readings after bursts of
one size: a reading after 20,000 events against one after chunks of 50,000 measures the burst).

    python bench/memory.py [--events 400000] [--chunk 20000] [--warm 20000]
        [--consumer-config queued.max.messages.kbytes=65536,...] [--arena-max N] [--trace FRAMES]
Prints one line per chunk and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency as L  # noqa: E402 — bench/latency.py, beside this file
from pydantic import SecretStr  # noqa: E402
from scale import Counting, publish, rss_mb  # noqa: E402

from coordinator.bus.factory import open_bus  # noqa: E402
from coordinator.engine import Coordinator  # noqa: E402
from coordinator.settings import Settings  # noqa: E402


class _MallInfo2(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]


def _heap(libc: ctypes.CDLL) -> dict[str, float]:
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    mb = 2**20
    return {
        "heap_mb": round((info.uordblks + info.hblkhd) / mb, 1),
        "free_heap_mb": round(info.fordblks / mb, 1),
    }


def _queues(report: str, into: dict) -> None:
    """The librdkafka statistics' queue figures, by client type."""
    stats = json.loads(report)
    if stats.get("type") == "consumer":
        parts = [p for t in stats.get("topics", {}).values() for p in t.get("partitions", {}).values()]
        into["fetchq_msgs"] = sum(max(0, p.get("fetchq_cnt", 0)) for p in parts)
        into["fetchq_mb"] = round(sum(max(0, p.get("fetchq_size", 0)) for p in parts) / 2**20, 1)
    elif stats.get("type") == "producer":
        into["producer_msgs"], into["producer_mb"] = stats["msg_cnt"], round(stats["msg_size"] / 2**20, 1)


def _serving(settings_json: str, state_url: str, status: str, options: str) -> None:
    """In a process of its own: a coordinator until SIGTERM, its launch count and memory to `status`."""
    opts = json.loads(options)
    libc = ctypes.CDLL("libc.so.6")
    settings = Settings.model_validate_json(settings_json).model_copy(
        update={"state_url": SecretStr(state_url), "malloc_arena_max": opts["arena_max"]}
    )
    queues: dict[str, float] = {}
    bus = open_bus(settings)  # as the service opens it (the arenas capped there)
    bus.config.update({"statistics.interval.ms": 1000, "stats_cb": lambda report: _queues(report, queues)})
    bus.consumer_config.update(opts["consumer"])
    launcher = Counting(settings)
    stop, trim = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: trim.set())
    snapshots: list = []
    if opts["trace"]:
        import tracemalloc

        tracemalloc.start(opts["trace"])
        signal.signal(signal.SIGUSR2, lambda *_: snapshots.append(tracemalloc.take_snapshot()))

    def report() -> None:
        path, tmp = Path(status), Path(status + ".tmp")
        trimmed, traced = None, []
        while not stop.wait(0.2):
            if trim.is_set():
                trim.clear()
                libc.malloc_trim(0)
                trimmed = rss_mb(os.getpid())
            figures = {"launched": launcher.launched, "trimmed_mb": trimmed, **_heap(libc), **queues}
            figures["py_blocks"] = sys.getallocatedblocks()
            if len(snapshots) == 2:
                diff = snapshots.pop().compare_to(snapshots[0], "traceback")
                traced = [[s.size_diff, s.count_diff, s.traceback.format()[-6:]] for s in diff[:25]]
            figures["traced"] = traced
            tmp.write_text(json.dumps(figures))
            tmp.replace(path)

    threading.Thread(target=report, daemon=True).start()
    with Coordinator(
        L.build_spec(), settings, bus=bus, launchers={"command": launcher}, freeze_gc=True
    ) as coord:
        coord.run(stop=stop.is_set)


def settled(read: Callable[[], dict], timeout_s: float = 60.0) -> None:
    """Until the consumer's pre-fetch queue has been empty for two statistics reports in a row:
    the coordinator's own events, which come back after the launches, are taken too."""
    deadline, empty = time.monotonic() + timeout_s, 0
    while empty < 2 and time.monotonic() < deadline:
        time.sleep(1.1)  # librdkafka reports every second
        empty = empty + 1 if read().get("fetchq_msgs", 0) == 0 else 0


def _config(text: str) -> dict[str, object]:
    pairs = (item.split("=", 1) for item in text.split(",") if item)
    return {k: int(v) if v.isdigit() else v for k, v in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--chunk", type=int, default=20_000)
    parser.add_argument("--warm", type=int, default=20_000)
    parser.add_argument("--consumer-config", default="", help="librdkafka consumer settings, k=v,k=v")
    parser.add_argument("--trace", type=int, default=0, help="tracemalloc frames: a diff warm → end")
    parser.add_argument(
        "--arena-max",
        type=int,
        default=Settings().malloc_arena_max,
        help="COORD_MALLOC_ARENA_MAX (0: glibc's default)",
    )
    args = parser.parse_args()
    options = json.dumps(
        {"consumer": _config(args.consumer_config), "arena_max": args.arena_max, "trace": args.trace}
    )
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = L.Backend("kafka_postgres", tmp).fresh()
        status = tmp / "status.json"
        proc = mp.get_context("spawn").Process(
            target=_serving,
            args=(settings.model_dump_json(), settings.resolved_state_url(), str(status), options),
        )
        proc.start()

        def read() -> dict:
            try:
                return json.loads(status.read_text())
            except (OSError, ValueError):
                return {"launched": 0}

        def until(n: int, timeout_s: float = 900) -> dict:
            deadline = time.monotonic() + timeout_s
            while (found := read())["launched"] < n:
                if not proc.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the serving coordinator stopped short: {found}")
                time.sleep(0.05)
            return found

        try:
            started = time.monotonic()
            for first in range(0, args.events, args.chunk):
                last = min(args.events, first + args.chunk)
                publish(settings, [L.event(n) for n in range(first, last)])
                until(last)
                settled(read)
                rss = rss_mb(proc.pid)
                os.kill(proc.pid, signal.SIGUSR1)
                time.sleep(0.5)
                found = read()
                samples.append({"events": last, "rss_mb": round(rss, 1), **found})
                if args.trace and (last == max(args.warm, args.chunk) or last == args.events):
                    os.kill(proc.pid, signal.SIGUSR2)
                print(
                    f"{last:>8,} events  RSS {rss:6.1f} MB  trimmed {found.get('trimmed_mb') or 0:6.1f}"
                    f"  heap {found['heap_mb']:6.1f} (free {found['free_heap_mb']:5.1f})"
                    f"  fetch queue {found.get('fetchq_msgs', '?')} msgs {found.get('fetchq_mb', '?')} MB"
                    f"  producer {found.get('producer_msgs', '?')}  py blocks {found['py_blocks']:,}"
                    f"  {time.monotonic() - started:5.0f} s",
                    flush=True,
                )
        finally:
            if args.trace:
                time.sleep(15)
                for size, count, lines in read().get("traced", []):
                    print(f"{size / 2**20:+.2f} MB {count:+d} blocks", *lines, sep="\n    ")
            proc.terminate()
            proc.join(60)
    result = {
        "events": args.events,
        "consumer_config": _config(args.consumer_config),
        "arena_max": args.arena_max,
    }
    result.update(growth(samples, args.warm))
    result["samples"] = [
        {k: s.get(k) for k in ("events", "rss_mb", "trimmed_mb", "heap_mb", "py_blocks")} for s in samples
    ]
    print(json.dumps(result))


def growth(samples: list[dict[str, float]], warm: int) -> dict[str, float]:
    """RSS growth per 100,000 events after the warm-up, and over the second half of the run."""
    after = [s for s in samples if s["events"] >= warm]
    half = [s for s in after if s["events"] >= (after[0]["events"] + after[-1]["events"]) / 2]

    def per_100k(a: dict, b: dict, key: str = "rss_mb") -> float:
        return round((b[key] - a[key]) / max(1, b["events"] - a["events"]) * 100_000, 2)

    return {
        "rss_mb": after[-1]["rss_mb"],
        "rss_warm_mb": after[0]["rss_mb"],
        "growth_mb_per_100k": per_100k(after[0], after[-1]),
        "late_growth_mb_per_100k": per_100k(half[0], half[-1]),
        "heap_growth_mb_per_100k": per_100k(after[0], after[-1], "heap_mb"),
    }


if __name__ == "__main__":
    main()
