"""OpenLineage events from a recorded history: posted over HTTP to a local receiver, valid against
the RunEvent JSON schema, with the exact input and output versions."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from coordinator.lineage import Lineage, openlineage_run_id
from coordinator.settings import Settings
from coordinator.store import StateStore
from tests.observe.journey import DAY, publish, raw_events, run_engine, spec_for
from tests.observe.receiver import Receiver

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "openlineage-runevent.schema.json").read_text())


def test_run_events_are_valid_and_exact(env):
    tmp_path, _, base = env
    spec = spec_for(tmp_path / "marker")
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    with Receiver() as receiver:
        settings = Settings(home=base.home, bus="local", lineage_url=receiver.url + "/api/v1/lineage",
                            lineage_namespace="acme")
        publish(settings, raw_events())
        lineage = Lineage(settings, spec)
        try:
            assert run_engine(spec, settings, hooks=[lineage]).failed == 1
            lineage.flush()
        finally:
            lineage.close()
        events = list(receiver.bodies)
    assert set(receiver.paths) == {"/api/v1/lineage"}
    for event in events:
        validator.validate(event)
    # the schema is not vacuous: a broken event is refused
    assert not validator.is_valid({k: v for k, v in events[0].items() if k != "producer"})
    assert not validator.is_valid({**events[0], "eventType": "DONE"})
    assert not validator.is_valid({**events[0], "run": {"runId": "not-a-uuid"}})
    assert not validator.is_valid({**events[0], "job": {"name": "x"}})

    kinds = sorted((e["job"]["name"], e["eventType"]) for e in events)
    assert kinds == [("load", "FAIL"), ("load", "START"), ("prep", "COMPLETE"), ("prep", "COMPLETE"),
                     ("prep", "START"), ("prep", "START")]
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        [load] = tx.list_runs(job="load")
        [prep] = tx.list_runs(job="prep", partition=DAY)
        [clean] = [v for v in tx.latest_versions("clean.a") if v.partition == DAY]
    run_id = openlineage_run_id(prep.run_id, 1)
    done = [e for e in events if e["run"]["runId"] == run_id and e["eventType"] == "COMPLETE"][0]
    assert done["job"] == {"namespace": "acme", "name": "prep", "facets": done["job"]["facets"]}
    assert done["job"]["facets"]["jobType"]["jobType"] == "COMMAND"
    [inp] = done["inputs"]
    assert (inp["namespace"], inp["name"]) == ("acme", "raw.a")
    assert inp["facets"]["version"]["datasetVersion"] == "raw-a-0101"
    [out] = done["outputs"]
    assert out["name"] == "clean.a" and out["facets"]["version"]["datasetVersion"] == clean.event_id
    assert done["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith("2024-01-01T00:00:00")

    fail = [e for e in events if e["eventType"] == "FAIL"][0]
    assert fail["run"]["runId"] == openlineage_run_id(load.run_id, 1)
    assert "marker missing" in fail["run"]["facets"]["errorMessage"]["message"]
    versions = {i["name"]: i["facets"]["version"]["datasetVersion"] for i in fail["inputs"]}
    assert versions == {"clean.a": clean.event_id, "raw.b": "raw-b-0101"}
    assert [o["name"] for o in fail["outputs"]] == ["mid"] and "version" not in fail["outputs"][0]["facets"]
