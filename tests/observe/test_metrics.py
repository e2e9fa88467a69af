"""/metrics after a known history: counters from the hooks, gauges from the store and the bus."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from coordinator.api.app import create_app
from coordinator.bus.local import LocalBus
from coordinator.events import CompletionEvent
from coordinator.metrics import Metrics, group_lag
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.watch import Watcher
from tests.observe.journey import publish, raw_events, run_engine, spec_text

PUSH_JOB = """\
  push:
    kind: command
    inputs: [raw.a]
    outputs: [pushed.a]
    settings:
      command:
        - sh
        - -c
        - >-
          echo '{"details": {"inserted": 5, "updated": 2, "rejected": 1}}' >> "$COORD_RESULT_FILE"
"""


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_after_a_known_run(env):
    tmp_path, _, settings = env
    spec = parse_spec(spec_text(tmp_path / "marker") + PUSH_JOB)
    publish(settings, raw_events())
    with LocalBus(settings.home / "bus.db").producer() as producer:
        producer.produce(settings.topic_events, b"not an event")
        producer.produce(settings.topic_events, b"\x00\x01 nor this")
    metrics = Metrics()
    stats = run_engine(spec, settings, hooks=[metrics])
    assert (stats.succeeded, stats.failed, stats.dead_lettered) == (4, 1, 2)
    assert Watcher(settings, LocalBus(settings.home / "bus.db"), [metrics]).tick() == 2
    publish(settings, [CompletionEvent(dataset="raw.x", partition="2024-02-01") for _ in range(3)])

    with StateStore(settings.resolved_state_url()) as store:
        metrics.watch(store, group_lag(settings))
        with TestClient(create_app(settings, metrics=metrics)) as client:
            response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    # raw.a ×2, raw.b, then the coordinator's own: clean.a ×2, pushed.a ×2 succeeded; mid failed
    assert value("coord_events_consumed_total", status="succeeded") == 7
    assert value("coord_events_consumed_total", status="failed") == 1
    reasons = {k[1]: v for k, v in got.items() if k[0] == "coord_events_dead_lettered_total"}
    assert sum(reasons.values()) == 2 and all(dict(k)["reason"] for k in reasons)
    assert value("coord_runs_finished_total", job="prep", state="succeeded") == 2
    assert value("coord_runs_finished_total", job="load", state="failed") == 1
    assert value("coord_run_attempts_total", job="load", outcome="failed") == 1
    assert value("coord_event_to_launch_seconds_count", job="prep") == 2
    assert 0 <= value("coord_event_to_launch_seconds_sum", job="prep") < 60
    assert value("coord_run_duration_seconds_count", job="push", outcome="succeeded") == 2
    assert value("coord_rows_total", job="push", kind="pushed") == 14  # (5 + 2) × 2 days
    assert value("coord_rows_total", job="push", kind="rejected") == 2
    assert value("coord_runs", job="load", state="failed") == 1
    assert value("coord_runs", job="prep", state="succeeded") == 2
    assert value("coord_outbox_pending") == 0
    turns = value("coord_loop_turn_seconds_count")
    assert turns >= 1 and 0 < value("coord_loop_turn_seconds_sum") < 60
    assert value("coord_loop_batch_messages_count") == turns
    assert value("coord_loop_batch_messages_sum") == stats.events + stats.dead_lettered  # each once
    assert value("coord_bus_lag_messages") == 3  # published after the engine stopped


POOLED = """\
datasets:
  raw.a: {partitioning: daily}
pools: {slow: 2}
jobs:
  quick: {kind: command, inputs: [raw.a], outputs: [quick.a], settings: {command: "true"}}
  heavy: {kind: command, pool: slow, inputs: [raw.a], outputs: [heavy.a], settings: {command: "true"}}
"""


def test_the_service_exports_every_pools_size_and_slots_in_use(env):
    """Built by the service, the gauges know the spec's pools: each one's size, and its slots in
    use — 0 for an idle pool, so that used / total is there to alert on before the pool fills."""
    import time

    from coordinator.operations import rerun
    from coordinator.service import Service

    _, _, settings = env
    spec = parse_spec(POOLED)
    publish(settings, [CompletionEvent(dataset="raw.a", partition="2024-01-01")])
    assert run_engine(spec, settings).succeeded == 2
    with StateStore(settings.resolved_state_url()) as store:
        [heavy] = rerun(store, spec, "heavy", "2024-01-01").created
        with store.begin() as tx:  # taken by an instance, as the engine's claim would
            [claimed] = tx.claim("slow", 2, "elsewhere#1", time.time())
    assert claimed.run_id == heavy.run_id
    with Service(spec, settings, observe=True, log_runs=False) as service:
        got = samples(service.metrics.exposition().decode())
    assert got[("coord_pool_slots_total", (("pool", "slow"),))] == 2
    assert got[("coord_pool_slots_total", (("pool", "default"),))] == 8
    assert got[("coord_pool_slots_used", (("pool", "slow"),))] == 1
    assert got[("coord_pool_slots_used", (("pool", "default"),))] == 0
