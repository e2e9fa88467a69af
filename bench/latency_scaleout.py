"""bench/latency.py's scale-out figures: N coordinator processes in one consumer group over one
PostgreSQL, under an offered load or draining a backlog."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
import uuid
from pathlib import Path

from latency_load import latency_figures
from latency_setup import (
    WARM_UP,
    Backend,
    build_spec,
    event,
    instant,
    launch_times,
    produce,
    produced_at,
    publish_backlog,
)

from coordinator.bus.factory import open_bus
from coordinator.engine import Coordinator
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.store.store import StateStore


def _instance(settings_json: str, name: str, stop, out: str) -> None:
    """In a process of its own: one coordinator instance until `stop` is set; its launches to `out`."""
    settings = Settings.model_validate_json(settings_json).model_copy(update={"instance_name": name})
    launcher = instant(settings)
    with Coordinator(build_spec(), settings, launchers={"command": launcher}, freeze_gc=True) as coord:
        coord.run(stop=stop.is_set)
    Path(out).write_text(json.dumps(launch_times(launcher)))


class Instances:
    """`n` coordinator processes in one consumer group over one PostgreSQL — the way the
    coordinator scales out. Launches are counted from the store (runs that succeeded), and each
    process hands its launch times over when stopped."""

    def __init__(self, settings: Settings, n: int, tmp: Path) -> None:
        ctx = mp.get_context("spawn")
        self.settings, self.stop = settings, ctx.Event()
        self.outs = [tmp / f"launches-{uuid.uuid4().hex[:8]}.json" for _ in range(n)]
        self.procs = [
            ctx.Process(
                target=_instance, args=(settings.model_dump_json(), f"bench-{i}", self.stop, str(out))
            )
            for i, out in enumerate(self.outs)
        ]
        for proc in self.procs:
            proc.start()

    def done(self) -> int:
        with StateStore(self.settings.resolved_state_url()) as store, store.begin() as tx:
            return tx.count_runs(("succeeded",))

    def wait_for(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.done() < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.done() >= n

    def finish(self) -> dict[str, tuple[str, float]]:
        self.stop.set()
        launched: dict[str, tuple[str, float]] = {}
        for proc, out in zip(self.procs, self.outs, strict=True):
            proc.join(120)
            launched.update({k: tuple(v) for k, v in json.loads(out.read_text()).items()})
        return launched


def scaled_out(backend: Backend, rate: int | None, seconds: float, backlog: int, n: int) -> dict[str, float]:
    """The offered load `rate` (or, with rate None, the sustained drain of `backlog` events) served
    by `n` coordinator processes; the same figures as offered_load / sustained."""
    settings = backend.fresh(partitions=2 * n)
    if rate is None:
        publish_backlog(settings, backlog)
        group = Instances(settings, n, backend.tmp)
        complete = group.wait_for(backlog, timeout_s=600)
        times = sorted(at for _, at in group.finish().values())
        rate_out = (len(times) - 1) / (times[-1] - times[0])
        print(
            f"  {backend.name} x{n} sustained: {rate_out:,.0f} events/s"
            + ("" if complete else " (incomplete)")
        )
        return {"sustained_events_per_s": round(rate_out)}
    group = Instances(settings, n, backend.tmp)
    with Publisher(open_bus(settings), settings) as publisher:
        publisher.publish(event(WARM_UP))
        publisher.flush()
    if not group.wait_for(1, timeout_s=60):
        raise RuntimeError("the coordinators did not launch the warm-up run")
    time.sleep(5.0)  # every member has joined the group and the partitions are spread
    total = int(rate * seconds)
    started = time.time()
    producer = mp.get_context("spawn").Process(
        target=produce, args=(settings.model_dump_json(), rate, seconds, 0)
    )
    producer.start()
    producer.join()
    complete = group.wait_for(total + 1, timeout_s=120 + seconds)
    launched = group.finish()
    with StateStore(settings.resolved_state_url()) as store:
        sent = produced_at(store)
    lat = sorted((at - sent[eid]) * 1000 for eid, at in launched.values() if eid in sent and at >= started)
    out = latency_figures(lat, total, complete)
    print(f"  {backend.name} x{n} {rate:>6}/s: {out}", flush=True)
    return out
