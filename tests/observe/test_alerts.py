"""Alerts reach a local HTTP receiver exactly once per incident: failures (also when the same run
fails again), missed deadlines naming the missing inputs and the root cause, dead letters —
and nothing again after a restart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coordinator.alerts import Alerts, deadline_at, latest_due
from coordinator.bus.local import LocalBus
from coordinator.events import Column, CompletionEvent
from coordinator.operations import retry
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore
from coordinator.watch import Watcher
from tests.observe.journey import DAY, NEXT, publish, raw_events, run_engine, spec_for
from tests.observe.receiver import Receiver

AFTER_DEADLINES = datetime(2024, 1, 3, 7, 0, tzinfo=UTC).timestamp()


def test_deadline_arithmetic():
    assert deadline_at("daily", "2024-01-01", "06:00") == datetime(2024, 1, 2, 6, tzinfo=UTC).timestamp()
    assert deadline_at("hourly", "2024-01-01T05", "0:20") == datetime(2024, 1, 1, 6, 20,
                                                                       tzinfo=UTC).timestamp()
    assert deadline_at("none", "x", "06:00") is None
    assert latest_due("daily", "06:00", datetime(2024, 1, 3, 5, 59, tzinfo=UTC).timestamp()) == "2024-01-01"
    assert latest_due("daily", "06:00", AFTER_DEADLINES) == "2024-01-02"


def test_one_alert_per_incident_across_repeats_and_restarts(env):
    tmp_path, _, base = env
    spec = spec_for(tmp_path / "marker")
    with Receiver() as receiver, StateStore(base.resolved_state_url()) as store:
        settings = Settings(home=base.home, bus="local", alert_webhooks=[receiver.url + "/hook"],
                            public_url="http://coord.example:8765")
        publish(settings, raw_events())
        alerts = Alerts(settings, spec, store)
        assert run_engine(spec, settings, hooks=[alerts]).failed == 1
        assert receiver.bodies == []  # found by the watcher's tick, not inside the engine's transaction
        [load] = [r for r in store_runs(store) if r.job == "load"]
        assert alerts.check_runs(AFTER_DEADLINES) == [load.run_id]
        [failed] = receiver.bodies
        assert failed["incident"] == f"run-failed:{load.run_id}" and failed["kind"] == "run-failed"
        assert failed["text"].startswith(f"Run load[{DAY}] failed: exit code 3")
        assert "marker missing" in failed["error"] and failed["root_cause"] == f"this run ({load.run_id})"
        assert failed["link"] == f"http://coord.example:8765/ui/runs/{load.run_id}"
        assert {f["title"] for f in failed["attachments"][0]["fields"]} >= {"job", "error", "root cause"}

        # the same run fails again after a retry: the same incident, no second alert
        retry(store, load.run_id)
        assert run_engine(spec, settings, hooks=[alerts]).failed == 1
        assert alerts.check_runs(AFTER_DEADLINES) == []
        assert len(receiver.bodies) == 1

        # missed deadlines, checked at 07:00 on Jan 3rd: three waiting job partitions
        assert sorted(alerts.check_deadlines(AFTER_DEADLINES)) == [
            f"after[{DAY}]", f"after[{NEXT}]", f"load[{NEXT}]"]
        by_incident = {b["incident"]: b for b in receiver.bodies}
        late = by_incident[f"deadline:load:{NEXT}"]
        assert late["missing"] == [f"raw.b[{NEXT}]"] and "still waiting for raw.b[2024-01-02]" in late["text"]
        assert late["deadline"] == "2024-01-03 06:00 UTC"
        held = by_incident[f"deadline:after:{DAY}"]
        assert held["missing"] == [f"mid[{DAY}]"] and held["run_id"] == load.run_id  # root cause
        assert held["root_cause"].startswith(f"run {load.run_id} load[{DAY}] failed: exit code 3")
        assert alerts.check_deadlines(AFTER_DEADLINES + 60) == []

        # dead letters: a burst of one reason is one incident
        with LocalBus(settings.home / "bus.db").producer() as producer:
            producer.produce(settings.topic_events, b"garbage 1")
            producer.produce(settings.topic_events, b"garbage 2")
        assert run_engine(spec, settings, hooks=[alerts]).dead_lettered == 2
        bus = LocalBus(settings.home / "bus.db")
        watcher = Watcher(settings, bus, [alerts], clock=lambda: AFTER_DEADLINES)
        assert watcher.tick() == 2
        dead = [b for b in receiver.bodies if b["kind"] == "dead-letter"]
        assert len(dead) == 1 and dead[0]["source_topic"] == settings.topic_events and dead[0]["reason"]
        watcher.stop()
        assert len(receiver.bodies) == 5

        # restart: a new hook, a new engine, the same failure again and the clock past deadlines
        restarted = Alerts(settings, spec, store)
        retry(store, load.run_id)
        assert run_engine(spec, settings, hooks=[restarted]).failed == 1
        assert restarted.check_deadlines(AFTER_DEADLINES + 3600) == []
        assert restarted.check_runs(AFTER_DEADLINES + 3600) == []
        restarted.tick(AFTER_DEADLINES + 3600)
        assert len(receiver.bodies) == 5
        assert len({b["incident"] for b in receiver.bodies}) == 5
        assert set(receiver.paths) == {"/hook"}


def store_runs(store: StateStore):
    with store.begin() as tx:
        return tx.list_runs()


CONTRACT = """
datasets:
  raw.c: {partitioning: daily, columns: [{name: id, type: long}]}
jobs:
  use: {kind: command, inputs: [raw.c], outputs: [used], settings: {command: "true"}}
"""


def test_a_blocked_contract_alerts_once(env):
    _, _, base = env
    spec = parse_spec(CONTRACT)
    bad = CompletionEvent(event_id="raw-c-bad", dataset="raw.c", partition=DAY,
                          columns=(Column(name="id", type="string"),))
    with Receiver() as receiver, StateStore(base.resolved_state_url()) as store:
        settings = Settings(home=base.home, bus="local", alert_webhooks=[receiver.url, receiver.url + "/2"])
        publish(settings, [bad])
        alerts = Alerts(settings, spec, store)
        assert run_engine(spec, settings, hooks=[alerts]).blocked == 1
        [blocked] = alerts.check_runs(AFTER_DEADLINES)
        assert alerts.check_runs(AFTER_DEADLINES) == []
        assert len(receiver.bodies) == 2 and sorted(receiver.paths) == ["/", "/2"]  # once per webhook
        body = receiver.bodies[0]
        assert body["kind"] == "run-blocked" and body["run_id"] == blocked and "id" in body["error"]
        assert body["text"].startswith(f"Run use[{DAY}] is blocked")


@pytest.mark.postgres
def test_incidents_are_recorded_once_on_postgresql(postgres_url, tmp_path):
    spec = parse_spec(CONTRACT)
    with Receiver() as receiver, StateStore(postgres_url) as store:
        settings = Settings(home=tmp_path, alert_webhooks=[receiver.url])
        first, again = Alerts(settings, spec, store), Alerts(settings, spec, store)  # two instances
        assert first.raise_incident("test:1", "run-failed", "boom", {"error": "x"})
        assert not again.raise_incident("test:1", "run-failed", "boom", {"error": "x"})
        assert again.check_runs(AFTER_DEADLINES) == [] and again.deliver() == 0
        assert [b["incident"] for b in receiver.bodies] == ["test:1"]
