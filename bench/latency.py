"""Event-to-launch latency and sustained throughput of the coordinator, 1,000 jobs in the spec.

Two backends: kafka_postgres (the broker at $KAFKA_BOOTSTRAP_SERVERS and a fresh database on
$COORD_TEST_POSTGRES_URL — both 127.0.0.1) and local_sqlite (the embedded bus and SQLite).
The spec has 1,000 daily jobs job_i: src.i → out.i, so every event makes one run ready. Its
pool is 10,000: the launcher below ends at once, so a run holds its pool slot only until the
next loop turn records its end, and a smaller cap would measure the cap, not the coordinator.

- Offered loads 100, 1,000 and 10,000 events/s: a separate, already connected producer
  process publishes events at that pace (produced_at is set as each is published) while the
  coordinator serves in this process. Latency = when the launcher was asked to start the run −
  the event's produced_at; p50/p99/max over every event. The 100 and 1,000 events/s loads run
  --repeat times (3), each on a fresh topic and store: the figures are those of the run with the
  median p99, and `runs_p99_ms` lists every run's (the machine is shared; one run's tail is noise).
  An untimed run at 1,000 events/s goes first (a broker just started is still compiling).
- Sustained: a backlog of --backlog events is published first; the coordinator drains it;
  events/s = launches / (last launch − first launch), and `with_start_up_events_per_s` counts
  from the coordinator's start instead (consumer group join, store open). Every one of those
  events launches a run; `ingest_only_events_per_s` is the same backlog of events no job
  consumes (recorded and evaluated, nothing launched).
- Baselines: `baseline_postgres_writes_events_per_s` (kafka_postgres) is PostgreSQL alone
  writing, by COPY, the rows one event and its run leave in the store, measured in the same
  run on the same machine; `baseline_sqlite_writes_events_per_s` (local_sqlite) is SQLite alone
  writing the same rows by executemany; `sustained_to_baseline` is the coordinator's share of
  that ceiling. The drain and its baseline run max(3, --repeat) times each, in pairs whose order
  turns: the figures are medians, `sustained_to_baseline` the median of the pairs' ratios, and
  `sustained_runs_events_per_s` / `baseline_runs_events_per_s` list every run.
- Scale-out (`kafka_postgres_xN`, --instances N, default 2): the 100 and 1,000 events/s loads
  and the sustained drain served by N coordinator processes in one consumer group over one
  PostgreSQL (topic of 2N partitions).

The launcher is the stub (coordinator/launchers/stub.py), which records the launch and reports
success at once, so the figures are the coordinator's own cost (bus, state store, readiness,
claims, outbox, its own completion events back on the bus) — not process start-up, which the
`command` kind adds and which is printed separately (median of sequential `true` runs). The
test PostgreSQL that scripts/services starts runs with fsync off; a durable server adds one WAL
flush per transaction (two per loop turn: its batch's events, then its results).

    python bench/latency.py [--seconds 5] [--backlog 20000] [--only local_sqlite] [--instances 2] [--repeat 3]
        [--loads 100,1000,10000]
Prints figures as it goes and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

# What the other benches use from here (`import latency as L`), each in its own module beside this one.
from latency_baseline import _copy, postgres_floor, sqlite_floor  # noqa: F401
from latency_load import (  # noqa: F401
    command_spawn_ms,
    ingest_only,
    median_run,
    offered_load,
    sustained,
    sustained_against,
)  # fmt: skip
from latency_scaleout import scaled_out
from latency_setup import (  # noqa: F401
    JOBS,
    LOADS,
    WARM_UP,
    Backend,
    backend_names,
    build_spec,
    event,
    instant,
    launch_times,
    publish_backlog,
    serve,
    wait_for,
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each offered load")
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--only", choices=["kafka_postgres", "local_sqlite"])
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the 100 and 1,000 events/s loads (the median p99 run)"
    )
    parser.add_argument(
        "--instances", type=int, default=2, help="coordinator processes for the scale-out figures (0: none)"
    )
    parser.add_argument(
        "--loads", default=",".join(map(str, LOADS)), help="offered loads in events/s ('': none)"
    )
    args = parser.parse_args()
    spec = build_spec()
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in backend_names(args.only):
            backend = Backend(name, tmp)
            print(f"{name}: {JOBS} jobs in the spec", flush=True)
            figures: dict[str, object] = {}
            # untimed: a broker just started (JIT) and cold caches would be measured otherwise
            print(f"  {name} warm-up (not counted):", flush=True)
            offered_load(backend, spec, 1000, 2.0)
            for rate in [int(r) for r in args.loads.split(",") if r]:
                seconds = args.seconds if rate < 10000 else max(1.0, args.seconds / 2)
                repeat = args.repeat if rate < 10000 else 1
                figures[str(rate)] = median_run(
                    [offered_load(backend, spec, rate, seconds) for _ in range(repeat)]
                )
            floor = postgres_floor if name == "kafka_postgres" else sqlite_floor
            drained = sustained_against(backend, spec, args.backlog, floor, max(3, args.repeat))
            baseline = drained.pop("baseline")
            figures["sustained_events_per_s"] = drained.pop("sustained_events_per_s")
            figures["with_start_up_events_per_s"] = drained.pop("with_start_up_events_per_s")
            figures["ingest_only_events_per_s"] = ingest_only(backend, spec, args.backlog)
            if name == "kafka_postgres":
                figures["baseline_postgres_writes_events_per_s"] = baseline
            else:
                figures["baseline_sqlite_writes_events_per_s"] = baseline
            figures.update(drained)  # sustained_to_baseline: the median of same-run pairs' ratios
            result[name] = figures
            if name == "kafka_postgres" and args.instances > 1:
                n = args.instances
                print(f"{name}: {n} coordinator processes in one consumer group", flush=True)
                scaled = {str(rate): scaled_out(backend, rate, args.seconds, 0, n) for rate in (100, 1000)}
                scaled.update(scaled_out(backend, None, 0, args.backlog, n))
                result[f"{name}_x{n}"] = scaled
        spawn = command_spawn_ms(tmp)
        print(f"command kind: a `true` process is started and reaped in {spawn} ms (median)")
    result["command_spawn_ms_p50"] = spawn
    print(json.dumps(result))


if __name__ == "__main__":
    main()
