"""bench/latency.py's measurements on one backend: an offered load's event-to-launch latency (and
the median of repeated runs), the sustained drain of a backlog, ingest only, and a `command`
job's process start-up."""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import latency_setup as S

from coordinator.engine import Coordinator
from coordinator.launchers.base import RunContext
from coordinator.launchers.command import CommandLauncher
from coordinator.settings import Settings
from coordinator.spec.models import PipelineSpec


def offered_load(backend: S.Backend, spec: PipelineSpec, rate: int, seconds: float) -> dict[str, float]:
    settings = backend.fresh()
    coord, launcher, stop, thread = S.serve(spec, settings)
    S.warm_up(settings, launcher)
    total = int(rate * seconds)
    producer = mp.get_context("spawn").Process(
        target=S.produce, args=(settings.model_dump_json(), rate, seconds, 0)
    )
    producer.start()
    producer.join()
    complete = S.wait_for(launcher, total, timeout_s=120 + seconds)
    stop.set()
    thread.join(60)
    sent = S.produced_at(coord.store)
    coord.close()
    lat = sorted((at - sent[eid]) * 1000 for eid, at in S.launch_times(launcher).values() if eid in sent)
    out = latency_figures(lat, total, complete)
    print(f"  {backend.name} {rate:>6}/s: {out}", flush=True)
    return out


def median_run(runs: list[dict[str, float]]) -> dict[str, object]:
    """Of repeated runs of one offered load, the run with the median p99, with every run's p99
    beside it: one run's tail on a shared machine says as much about its neighbours."""
    ordered = sorted(runs, key=lambda r: r["p99_ms"])
    out: dict[str, object] = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        out["runs_p99_ms"] = [r["p99_ms"] for r in runs]
    return out


def latency_figures(lat: list[float], total: int, complete: bool) -> dict[str, float]:
    """p50/p99/max of sorted event-to-launch latencies (ms), with the counts behind them."""
    out: dict[str, float] = {
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 1),
        "max_ms": round(lat[-1], 1),
        "events": total,
        "launched": len(lat),
    }
    if not complete:
        out["incomplete"] = True
    return out


def sustained(backend: S.Backend, spec: PipelineSpec, backlog: int) -> float:
    settings = backend.fresh()
    S.publish_backlog(settings, backlog)
    started = time.time()
    coord, launcher, stop, thread = S.serve(spec, settings)
    complete = S.wait_for(launcher, backlog, timeout_s=600)
    times = sorted(at for _, at in S.launch_times(launcher).values())
    stop.set()
    thread.join(60)
    coord.close()
    rate = (len(times) - 1) / (times[-1] - times[0])
    cold = len(times) / (times[-1] - started)
    print(
        f"  {backend.name} sustained: {rate:,.0f} events/s from the first launch to the last, over a"
        f" backlog of {backlog} ({cold:,.0f} events/s counting the coordinator's start-up)"
        + ("" if complete else " (incomplete)"),
        flush=True,
    )
    return round(rate), round(cold)


def ingest_only(backend: S.Backend, spec: PipelineSpec, backlog: int) -> float:
    """Events/s for completions no job consumes: bus, decode, dedupe, record, readiness — no runs."""
    settings = backend.fresh()
    S.publish_backlog(settings, backlog, S.other_event)
    with Coordinator(spec, settings, launchers={"command": S.instant(settings)}, freeze_gc=True) as coord:
        started = time.monotonic()
        stats = coord.run(max_events=backlog, timeout_s=600)
        rate = stats.events / (time.monotonic() - started)
    print(f"  {backend.name} ingest only: {rate:,.0f} events/s over {stats.events} events", flush=True)
    return round(rate)


def command_spawn_ms(tmp: Path, n: int = 20) -> float:
    launcher = CommandLauncher(Settings(home=tmp))
    times = []
    for i in range(n):
        ctx = RunContext(
            run_id=f"s{i}",
            job="spawn",
            partition=None,
            attempt=1,
            settings={"command": ["true"]},
            inputs=(),
            outputs=(),
            workdir=tmp / "spawn" / str(i),
        )
        t0 = time.perf_counter()
        launcher.wait(launcher.start(ctx), ctx)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def sustained_against(
    backend: S.Backend,
    spec: PipelineSpec,
    backlog: int,
    floor: Callable[[S.Backend, int], float],
    repeat: int,
) -> dict[str, object]:
    """The sustained drain and the database-alone baseline `floor`, `repeat` times each, in pairs
    whose order turns (the machine is shared: a neighbour's burst hits one pair, and both sides
    of it alike): the medians, every run, and the median of the pairs' ratios."""
    drains, colds, floors, ratios = [], [], [], []
    for r in range(repeat):
        if r % 2:
            ceiling = floor(backend, backlog)
            rate, cold = sustained(backend, spec, backlog)
        else:
            rate, cold = sustained(backend, spec, backlog)
            ceiling = floor(backend, backlog)
        drains.append(rate)
        colds.append(cold)
        floors.append(ceiling)
        ratios.append(rate / ceiling)
    return {
        "sustained_events_per_s": round(statistics.median(drains)),
        "with_start_up_events_per_s": round(statistics.median(colds)),
        "baseline": round(statistics.median(floors)),
        "sustained_to_baseline": round(statistics.median(ratios), 3),
        "sustained_runs_events_per_s": drains,
        "baseline_runs_events_per_s": floors,
    }
