"""The web UI in a real headless Chromium (Debian's package, driven by Playwright): see the failed
run in the graph, fail to retry without the token, retry with it, see the journey succeed; and
the failure-to-recovery walk: a blocked run, its cause traced to the upstream version whose
column type changed (the dataset's versions and their diff), the fix, downstream succeeding and
the blocked run dimmed as superseded, on a 1,024 px window the page fits."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from coordinator.api.app import create_app
from coordinator.engine import Coordinator
from coordinator.settings import Settings
from coordinator.store import StateStore
from tests.conftest import missing
from tests.observe.journey import DAY, publish, raw_events, run_engine, spec_for
from tests.observe.recovery import DAY as PLAN_DAY
from tests.observe.recovery import plans, recovery_spec
from tests.observe.server import engine_running, serving

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TOKEN = "ui-test-token"


@pytest.fixture
def chromium():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright", "pip install playwright (the Python package only)")
    if not Path(CHROMIUM).exists() or not shutil.which("chromedriver"):
        missing("chromium", "apt-get install -y chromium chromium-driver (scripts/bootstrap dev does it)")
    with sync_playwright() as p:
        yield p.chromium


def test_ui_shows_the_failure_and_a_retry_makes_it_succeed(env, chromium, tmp_path: Path):
    tmp, _, base = env
    marker = tmp / "marker"
    spec = spec_for(marker)
    settings = Settings(home=base.home, bus="local", api_token=TOKEN, anonymous_reads=True)
    publish(settings, raw_events())
    assert run_engine(spec, settings).failed == 1

    requests: list[str] = []
    with (
        StateStore(settings.resolved_state_url()) as store,
        serving(create_app(settings, spec=spec, store=store)) as url,
        engine_running(Coordinator(spec, settings)),
    ):
        # read-only without a token, over plain HTTP too
        [load] = httpx.get(f"{url}/api/runs", params={"job": "load"}).json()["runs"]
        assert load["state"] == "failed"
        assert httpx.post(f"{url}/api/runs/{load['run_id']}/retry").status_code == 401

        context = chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1024, "height": 1000})  # the graph is 1,400 px wide: scaled to fit
        try:
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: d.accept())  # every action asks first
            page.goto(f"{url}/ui")
            page.wait_for_selector("#partition option", state="attached")
            page.select_option("#partition", DAY)
            failed = page.locator('#graph .job[data-job="load"][data-state="failed"]')
            failed.wait_for()
            _fits(page, 1024)
            assert page.get_attribute('#graph .job[data-job="prep"]', "data-state") == "succeeded"
            assert page.get_attribute('#graph .job[data-job="after"]', "data-state") == "idle"
            failed.click()
            page.wait_for_selector("#run-state.state-failed")
            assert "marker missing" in page.inner_text("#run-error")
            assert "marker missing" in page.inner_text("#log")
            assert "raw-b-0101" in page.inner_text("#detail")

            page.click("#retry")  # no token yet: refused
            page.wait_for_function("document.querySelector('#status').textContent.includes('401')")

            marker.touch()
            page.fill("#token", TOKEN)
            page.click("#retry")
            page.wait_for_selector('#graph .job[data-job="load"][data-state="succeeded"]', timeout=30_000)
            page.wait_for_selector('#graph .job[data-job="after"][data-state="succeeded"]', timeout=30_000)
            page.wait_for_selector("#run-state.state-succeeded", timeout=10_000)
            page.wait_for_selector('#grid tr[data-dataset="out"] td.state-complete')
            bars = page.locator("#gantt .gantt-row")  # the partition's runs over time: prep, load, after
            page.wait_for_selector("#gantt .gantt-row .bar-succeeded")
            assert bars.count() == 3 and page.locator("#gantt .bar-succeeded").count() == 3
            _fits(page, 1024)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-retry-succeeded.png"), full_page=True)
        finally:
            context.close()
    assert requests and all(u.startswith(url) for u in requests), "the page fetched something elsewhere"


def _fits(page, width: int, graph: bool = True) -> None:
    """Nothing of the page lies beyond the window's width: no horizontal scroll of the page, the
    graph's box ends inside the window, and (`graph`) the graph, scaled to its box, too."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("document.querySelector('#graph').getBoundingClientRect().right") <= width
    if graph:
        right = page.evaluate("document.querySelector('#graph svg').getBoundingClientRect().right")
        assert 0 < right <= width


def test_ui_traces_a_blocked_run_to_the_changed_column_and_shows_the_recovery(env, chromium, tmp_path: Path):
    tmp, _, base = env
    spec = recovery_spec()
    settings = Settings(home=base.home, bus="local", api_token=TOKEN, anonymous_reads=True)
    publish(settings, [plans(1, "string")])
    run_engine(spec, settings)
    publish(settings, [plans(2, "int64")])
    assert run_engine(spec, settings).blocked == 1
    width = 1024
    with (
        StateStore(settings.resolved_state_url()) as store,
        serving(create_app(settings, spec=spec, store=store)) as url,
        engine_running(Coordinator(spec, settings)),
    ):
        context = chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": width, "height": 900})
        try:
            page = context.new_page()
            refuse = []  # the answers to give the next confirmations: True accepts (the default)
            page.on("dialog", lambda d: d.accept() if (refuse.pop(0) if refuse else True) else d.dismiss())
            page.goto(f"{url}/ui")
            blocked = page.locator('#graph .job[data-job="model"][data-state="blocked"]')
            blocked.wait_for()
            _fits(page, width)
            blocked.click()
            page.wait_for_selector("#run-state.state-blocked")
            assert "column plan is int64, the contract says string" in page.inner_text("#run-error")
            assert f"coord rerun model -p {PLAN_DAY}" in page.inner_text("#next")
            inputs = page.inner_text("#inputs")
            assert "v2 of 2" in inputs and "plan: string → int64" in inputs
            page.click('#inputs a[data-dataset="raw.plans"]')
            page.wait_for_selector('#versions tr[data-event="plans-v2"]')
            assert "plan: string → int64" in page.inner_text('#versions tr[data-event="plans-v2"] td.changed')
            assert "id int64, plan string" in page.inner_text('#versions tr[data-event="plans-v1"]')
            _fits(page, width)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-blocked-run.png"), full_page=True)

            publish(settings, [plans(3, "string")])  # the fix, upstream
            page.wait_for_selector('#graph .job[data-job="model"][data-state="succeeded"]', timeout=30_000)
            page.wait_for_selector('#graph .job[data-job="report"][data-state="succeeded"]', timeout=30_000)
            page.wait_for_selector('#runs tr.run-row.superseded[data-state="superseded"]', timeout=10_000)
            page.wait_for_selector("#run-state.state-superseded", timeout=10_000)  # the open run page too
            assert "superseded by" in page.inner_text("#detail")
            assert page.locator("#next").count() == 0  # nothing left to do
            cell = page.locator('#timeline tr[data-job="model"] td.tl')
            assert "succeeded" in cell.inner_text()
            _fits(page, width)
            page.screenshot(path=str(ARTIFACTS / "ui-recovered.png"), full_page=True)

            # a rerun from the page: refused at the confirmation, then sent with the token
            page.fill("#token", TOKEN)
            refuse.append(False)
            page.click("#rerun")
            page.wait_for_function("document.querySelector('#status').textContent === 'not sent'")
            assert page.locator("#runs tr.run-row").count() == 5
            page.click("#rerun")
            page.wait_for_function("document.querySelector('#status').textContent.startsWith('queued 1')")
            seven = "document.querySelectorAll('#runs tr.run-row').length === 7"  # model, then report
            page.wait_for_function(seven, timeout=30_000)
            page.wait_for_selector('#timeline tr[data-job="model"] td.tl.state-succeeded', timeout=30_000)
        finally:
            context.close()


def test_a_graph_of_sixty_jobs_fits_the_window_and_zooms(env, chromium, tmp_path: Path):
    from coordinator.spec import parse_spec

    jobs = "\n".join(
        f"  j{i}:\n    kind: command\n    inputs: [{'raw' if i < 6 else f'd{i - 6}'}]\n"
        f"    outputs: [d{i}]\n    settings: {{command: [sh, -c, 'true']}}"
        for i in range(60)
    )
    spec = parse_spec(f"datasets:\n  raw: {{partitioning: daily}}\njobs:\n{jobs}\n")
    _, _, base = env
    settings = Settings(home=base.home, bus="local", anonymous_reads=True)
    with (
        StateStore(settings.resolved_state_url()) as store,
        serving(create_app(settings, spec=spec, store=store)) as url,
    ):
        context = chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1024, "height": 800})
        try:
            page = context.new_page()
            page.goto(f"{url}/ui")
            page.wait_for_selector('#graph .job[data-job="j59"]')
            natural = int(page.get_attribute("#graph svg", "width"))
            assert natural > 2000  # eleven layers of jobs: wider than any window
            # shown no smaller than readable: the graph pans inside its box, the page stays put
            _fits(page, 1024, graph=False)
            measure = "(g => [g.scrollWidth, g.clientWidth, g.scrollLeft])(document.querySelector('#graph'))"
            scroll, box, left = page.evaluate(measure)
            assert scroll > box and left == 0
            page.mouse.move(900, 130)  # drag the graph leftwards: it pans
            page.mouse.down()
            page.mouse.move(500, 130, steps=5)
            page.mouse.up()
            assert page.evaluate(measure)[2] > 300
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-sixty-jobs.png"))
            page.click("#zoom-fit")  # all of it at once
            _fits(page, 1024)
            for _ in range(3):
                page.click("#zoom-in")
            assert page.evaluate(measure)[0] > box
            assert page.evaluate("document.documentElement.scrollWidth") <= 1024
        finally:
            context.close()


def test_the_page_refreshes_itself_until_the_box_is_unticked(env, chromium, tmp_path: Path):
    """Auto-refresh polls the API every 1.5 s, one refresh at a time; unticked, the page stays as
    it is (no request at all) until it is ticked again."""
    tmp, _, base = env
    spec = spec_for(tmp / "marker")
    settings = Settings(home=base.home, bus="local", anonymous_reads=True)
    publish(settings, raw_events())
    run_engine(spec, settings)
    with (
        StateStore(settings.resolved_state_url()) as store,
        serving(create_app(settings, spec=spec, store=store)) as url,
    ):
        context = chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = context.new_page()
            calls: list[str] = []
            page.on("request", lambda r: calls.append(r.url) if "/api/" in r.url else None)
            page.goto(f"{url}/ui")
            page.wait_for_selector("body[data-loaded]", state="attached")
            first = page.get_attribute("body", "data-loaded")
            page.wait_for_function(f"document.body.dataset.loaded !== '{first}'", timeout=5_000)  # by itself
            page.uncheck("#auto")
            page.wait_for_timeout(1_000)  # a refresh already out may finish
            paused, before = page.get_attribute("body", "data-loaded"), len(calls)
            page.wait_for_timeout(4_000)
            assert page.get_attribute("body", "data-loaded") == paused and len(calls) == before
            page.check("#auto")
            page.wait_for_function(f"document.body.dataset.loaded !== '{paused}'", timeout=5_000)
        finally:
            context.close()
