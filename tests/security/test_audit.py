"""The audit of operator actions: retry, rerun, cancel (UI and CLI), backfill (CLI) and publish
through the API, each with the token's name (`cli:<user>` from the command line) and its time,
listed on the run's page — in its JSON and in the page itself, in a real headless Chromium."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from coordinator.api.app import create_app
from coordinator.events import CompletionEvent
from coordinator.settings import Settings
from coordinator.spec import load_spec
from coordinator.store import StateStore
from coordinator.store import audit as A
from tests.observe.journey import publish, run_engine
from tests.observe.server import serving
from tests.observe.test_ui_browser import ARGS, CHROMIUM, chromium  # noqa: F401 — the fixture

COORD = str(Path(sys.executable).parent / "coord")
D1, D2 = "2024-05-01", "2024-05-02"
SPEC = """\
datasets: {raw.a: {partitioning: daily}}
jobs:
  work: {kind: command, inputs: [raw.a], outputs: [mid], settings: {command: [sh, -c, 'exit 4']}}
"""


def _setup(home: Path, tmp: Path, tokens) -> tuple[Settings, Path]:
    spec_file = tmp / "pipeline.yaml"
    spec_file.write_text(SPEC)
    settings = Settings(home=home, bus="local", tokens=tokens.entries)
    publish(settings, [CompletionEvent(dataset="raw.a", partition=d, event_id=f"a-{d}") for d in (D1, D2)])
    assert run_engine(load_spec(spec_file), settings).failed == 2
    return settings, spec_file


def _cli(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
    env |= {"COORD_HOME": str(home), "COORD_BUS": "local", "COLUMNS": "250"}
    done = subprocess.run([COORD, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_operator_actions_are_audited_with_the_token_name_and_time(home, tmp_path, tokens) -> None:
    settings, spec_file = _setup(home, tmp_path, tokens)
    spec = load_spec(spec_file)
    ops, admin, publisher = tokens.header("operate"), tokens.header("admin"), tokens.header("publish")
    started = time.time()
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=spec, store=store)) as c:
        runs = {r["partition"]: r for r in c.get("/api/runs", headers=admin).json()["runs"]}
        first, second = runs[D1]["run_id"], runs[D2]["run_id"]
        assert c.post(f"/api/runs/{first}/retry", headers=ops).status_code == 200
        assert c.post(f"/api/runs/{first}/cancel", headers=ops).status_code == 200
        assert c.post(f"/api/runs/{first}/cancel", headers=ops).status_code == 409  # refused: not audited
        rerun = c.post("/api/jobs/work/rerun", params={"partition": D2}, headers=ops)
        assert rerun.status_code == 200, rerun.text
        [rerun_id] = [r["run_id"] for r in rerun.json()["created"]]
        event = {"dataset": "raw.a", "partition": D1, "producer": "el", "event_id": "a-again"}
        assert c.post("/events", content=json.dumps(event), headers=publisher).status_code == 202

        _cli(home, "retry", first)
        _cli(home, "backfill", "work", "--from", D1, "--to", D2, "--spec", str(spec_file), "--no-wait")
        me = f"cli:{getpass.getuser()}"

        page = c.get(f"/api/runs/{first}", headers=tokens.header("read")).json()["audit"]
        assert [(a["actor"], a["action"]) for a in page] == [
            (me, "backfill"), (me, "retry"), ("operator", "cancel"), ("operator", "retry")]
        assert all(started <= a["at"] <= time.time() for a in page)
        assert [a["at"] for a in page] == sorted((a["at"] for a in page), reverse=True)
        assert page[-1]["run_id"] == first and page[-1]["partition"] == D1
        # the run of D2: the rerun that made a new run and the backfill, as actions on its job partition
        of_second = c.get(f"/api/runs/{second}", headers=tokens.header("read")).json()["audit"]
        oldest = of_second[-1]
        assert (oldest["actor"], oldest["action"], oldest["run_id"]) == ("operator", "rerun", rerun_id)
        assert {a["action"] for a in of_second} == {"rerun", "backfill"}

        every = c.get("/api/audit", headers=admin).json()["audit"]
        assert {(a["actor"], a["action"]) for a in every} == {
            ("operator", "retry"), ("operator", "cancel"), ("operator", "rerun"), ("publisher", "publish"),
            (me, "retry"), (me, "backfill")}
        [published] = [a for a in every if a["action"] == "publish"]
        assert published["job"] == "raw.a" and "a-again" in published["detail"]
        assert c.get("/api/audit", headers=ops).status_code == 403
    with StateStore(settings.resolved_state_url()) as store, store.begin() as tx:
        assert len(A.recent(tx)) == len(every)


def test_the_run_page_shows_who_did_what(home, tmp_path, tokens, chromium) -> None:  # noqa: F811
    settings, spec_file = _setup(home, tmp_path, tokens)
    spec = load_spec(spec_file)
    with StateStore(settings.resolved_state_url()) as store, \
            serving(create_app(settings, spec=spec, store=store)) as url:
        context = chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = context.new_page()
            page.on("dialog", lambda d: d.accept())
            with store.begin() as tx:
                run_id = tx.list_runs(job="work", partition=D1, limit=1)[0].run_id
            page.goto(f"{url}/ui/runs/{run_id}")
            page.wait_for_function("document.querySelector('#status').textContent.includes('401')")
            page.fill("#token", tokens.plain["admin"])  # reads need the token: nothing shows without it
            page.dispatch_event("#token", "change")
            page.wait_for_selector("#run-state.state-failed")
            page.click("#retry")
            row = page.locator("#audit tr.audit-row").first
            row.wait_for(timeout=15_000)
            cells = row.locator("td").all_inner_texts()
            assert cells[1:3] == ["administrator", "retry"] and cells[0].startswith("20")
        finally:
            context.close()


def test_a_webhook_delivery_is_audited_as_the_webhook(home) -> None:
    import hashlib
    import hmac

    from coordinator.spec import parse_spec
    from tests.events.test_fivetran import CONNECTORS, SECRET, sync_end
    from tests.events.test_fivetran import SPEC as FIVETRAN_SPEC

    settings = Settings(home=home, bus="local", webhook_secret=SECRET, fivetran_connectors=CONNECTORS)
    body = json.dumps(sync_end()).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest().upper()
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=parse_spec(FIVETRAN_SPEC), store=store)) as c:
        sent = c.post("/webhooks/fivetran", content=body, headers={"X-Fivetran-Signature-256": signature})
        assert sent.status_code == 202, sent.text
        with store.begin() as tx:
            rows = A.recent(tx)
    assert sorted((r.actor, r.job, r.partition) for r in rows) == [
        ("fivetran-webhook", "fivetran.app.orders", "2024-06-01"),
        ("fivetran-webhook", "fivetran.app.users", "2024-06-01")]
