"""What leases cost sustained throughput: the same drain with and without the lease's loop work.

Each instance holds a lease (coordinator/lease.py); its loop pays for it with the fence — one
`SELECT … FOR KEY SHARE` of its lease row first in every write transaction (two per turn) — an
adoption look every `lease_renew_s` and the run watchdog every second, plus a renewal thread
writing one row every few seconds. This bench drains one backlog (as bench/latency.py's
`sustained`: 1,000 daily jobs, the stub launcher, --backlog events published before the
coordinator starts; events/s = launches / (last launch − first launch)) with all of that on
("fenced") and with the loop's part off ("unfenced", `Availability.unfenced_for_benchmark`, a
benchmark's knob that no setting or command reaches), interleaved in one run — fenced,
unfenced, fenced, unfenced… --repeat pairs, each drain on a fresh topic and store — so that
the machine's drift falls on both alike. It reports each side's median, the ratio of the
medians (fenced / unfenced: 1 − it is the throughput leases cost) and the median of the pairs'
own ratios. On a shared machine the drains' spread can exceed what is measured, so it also
weighs the fence directly: the median time of its statement in a transaction (`hold_ms`) times
the fenced transactions of a drain, over the drain's time (`fence_share_percent`), and with
the time the loop spent in the lease's periodic work (`tick_ms_per_drain`) added
(`lease_loop_share_percent`: the loop's time that leases take; the renewal thread is apart).

    python bench/leases.py [--backlog 20000] [--repeat 5] [--only kafka_postgres]
Prints figures as it goes and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from latency import Backend, backend_names, build_spec, instant, launch_times, publish_backlog, wait_for

from coordinator.engine import Coordinator
from coordinator.lease import LeaseKeeper
from coordinator.spec.models import PipelineSpec
from coordinator.store.store import StateStore


@dataclass
class Drain:
    rate: float  # launches per second, first launch to last
    seconds: float  # first launch to last
    holds: int  # fenced transactions (0 unfenced)
    tick_s: float  # time in the lease's periodic work in the loop (adoption look, watchdog)


def drain(backend: Backend, spec: PipelineSpec, backlog: int, fenced: bool) -> Drain:
    """One sustained drain of a fresh backlog."""
    settings = backend.fresh()
    publish_backlog(settings, backlog)
    launcher = instant(settings)
    coord = Coordinator(spec, settings, launchers={"command": launcher}, freeze_gc=True)
    if not fenced:
        coord.ha.unfenced_for_benchmark()
    spent = [0.0]
    tick = coord.every_turn[coord.every_turn.index(coord.ha.tick)]

    def timed(now: float) -> None:
        started = time.perf_counter()
        try:
            tick(now)
        finally:
            spent[0] += time.perf_counter() - started

    coord.every_turn[coord.every_turn.index(coord.ha.tick)] = timed
    stop = threading.Event()
    thread = threading.Thread(target=coord.run, kwargs={"stop": stop.is_set}, daemon=True)
    thread.start()
    complete = wait_for(launcher, backlog, timeout_s=600)
    stop.set()
    thread.join(60)
    coord.close()
    times = sorted(at for _, at in launch_times(launcher).values())
    if not complete:
        raise RuntimeError(f"{backend.name}: only {len(times)} of {backlog} runs launched")
    took = times[-1] - times[0]
    return Drain((len(times) - 1) / took, took, coord.ha.keeper.holds, spent[0])


def hold_ms(backend: Backend, n: int = 2000) -> float:
    """What the fence adds to one transaction: the median time of `LeaseKeeper.hold` (its one
    statement) in an open transaction of a fresh store, ms."""
    settings = backend.fresh()
    with StateStore(settings.resolved_state_url()) as store:
        keeper = LeaseKeeper(store, settings, name="bench")
        keeper.acquire()
        took = []
        for _ in range(n):
            with store.begin() as tx:
                started = time.perf_counter()
                keeper.hold(tx)
                tx.settle()  # on PostgreSQL the fence waits for the next statement: run it now
                took.append(time.perf_counter() - started)
        keeper.release()
    return statistics.median(took) * 1000


def compare(backend: Backend, spec: PipelineSpec, backlog: int, repeat: int) -> dict[str, object]:
    drain(backend, spec, backlog // 4, True)  # untimed: a cold broker, store and interpreter
    on_runs: list[Drain] = []
    fenced, unfenced = [], []
    for i in range(repeat):
        for on in (True, False) if i % 2 == 0 else (False, True):
            got = drain(backend, spec, backlog, on)
            (fenced if on else unfenced).append(got.rate)
            if on:
                on_runs.append(got)
        print(
            f"  {backend.name} pair {i + 1}: fenced {fenced[-1]:,.0f}, unfenced {unfenced[-1]:,.0f} events/s",
            flush=True,
        )
    med_on, med_off = statistics.median(fenced), statistics.median(unfenced)
    per_hold = hold_ms(backend)
    # the fence's own share of a fenced drain: its statements' time over the drain's
    share = statistics.median(d.holds * per_hold / 1000 / d.seconds for d in on_runs)
    loop_share = statistics.median((d.holds * per_hold / 1000 + d.tick_s) / d.seconds for d in on_runs)
    out = {
        "fenced_events_per_s": [round(x) for x in fenced],
        "unfenced_events_per_s": [round(x) for x in unfenced],
        "fenced_median": round(med_on),
        "unfenced_median": round(med_off),
        "fenced_to_unfenced": round(med_on / med_off, 3),
        "pair_ratios_median": round(
            statistics.median(a / b for a, b in zip(fenced, unfenced, strict=True)), 3
        ),
        "throughput_lost_percent": round((1 - med_on / med_off) * 100, 1),
        "hold_ms": round(per_hold, 3),
        "holds_per_drain": round(statistics.median(d.holds for d in on_runs)),
        "fence_share_percent": round(share * 100, 2),
        "tick_ms_per_drain": round(statistics.median(d.tick_s for d in on_runs) * 1000, 1),
        "lease_loop_share_percent": round(loop_share * 100, 2),
        "backlog": backlog,
    }
    print(f"  {backend.name}: {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5, help="fenced/unfenced pairs (the order alternates)")
    parser.add_argument("--only", choices=["kafka_postgres", "local_sqlite"])
    args = parser.parse_args()
    spec = build_spec()
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        for name in backend_names(args.only):
            print(f"{name}: fenced and unfenced drains, interleaved", flush=True)
            result[name] = compare(Backend(name, Path(tmp_name)), spec, args.backlog, args.repeat)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
