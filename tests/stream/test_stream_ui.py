"""A running stream job's health on the web UI, in a real headless Chromium: the worker up, its
heartbeat's age, consumer lag, watermark, windows open and announced, restarts and late events,
as the JSON API (which needs the token: 401 without) and the page show them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from coordinator.launchers.stream import free_port
from tests.observe.test_ui_browser import ARGS, CHROMIUM, chromium  # noqa: F401 - the fixture
from tests.stream.streams import (
    DAY,
    kafka_settings,
    running,
    start_worker,
    state,
    stop_worker,
    stream_spec,
    wait_for,
)

TOKEN = "stream-ui-token"


CELLS = ("heartbeat", "lag", "watermark", "windows-open", "announced", "restarts", "late")


def stream_row(browser, profile: Path, url: str) -> tuple[dict, str, str]:
    """The page's row of the job `clicks_hourly`: its cells by class, the worker cell's text and
    its title (each worker's partitions and lag)."""
    context = browser.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=ARGS, headless=True
    )
    try:
        page = context.new_page()
        page.goto(f"{url}/ui")
        page.fill("#token", TOKEN)
        page.dispatch_event("#token", "change")
        row = page.locator('#streams tr[data-job="clicks_hourly"]')
        row.wait_for()
        cells = {name: row.locator(f"td.{name}").inner_text() for name in CELLS}
        worker = row.locator("td").nth(1)
        return cells, worker.inner_text(), worker.get_attribute("title") or ""
    finally:
        context.close()


def test_the_page_shows_a_running_stream_jobs_health(
    kafka_bootstrap: str,
    topics: dict,
    tmp_path: Path,
    chromium,  # noqa: F811 - the fixture
):
    from confluent_kafka import Producer

    spec = stream_spec(topics["clicks"], "lateness_s: 0, heartbeat_s: 0.5")
    settings = kafka_settings(tmp_path, kafka_bootstrap, topics, api_token=TOKEN)
    port = free_port()
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    seen: dict = {}

    def send(*minutes: int) -> None:
        for minute in minutes:
            producer.produce(topics["clicks"], json.dumps({"ts": DAY + minute * 60}).encode(), partition=0)
        producer.flush(30)

    with running(spec, settings, http=("127.0.0.1", port)) as service:
        folder = settings.home / "streams" / "clicks_hourly"
        send(10, 70, 121)  # hours 00 and 01 close; hour 02 stays open
        wait_for("two hours closed", lambda: len(state(folder).get("announced", [])) == 2)
        send(20)  # late: hour 00 was announced
        supervisor = wait_for("the supervisor", lambda: service.streams and service.streams[0])
        wait_for("the late click in the heartbeat", lambda: supervisor.health().get("late") == 1)
        wait_for("the lag back to 0", lambda: supervisor.health().get("lag") == 0)
        seen["anonymous"] = httpx.get(f"{url}/api/streams").status_code
        seen["api"] = httpx.get(f"{url}/api/streams", headers=auth).json()
        seen["page"], seen["worker"], _ = stream_row(chromium, tmp_path / "profile", url)

    assert seen["anonymous"] == 401
    [health] = seen["api"]["streams"]
    assert health["up"] and 0 <= health["heartbeat_age_s"] < 5
    assert (health["lag"], health["windows_open"], health["announced"]) == (0, 1, 2)
    assert (health["restarts"], health["late"], health["events"]) == (0, 1, 3)
    assert health["watermark"] == DAY + 121 * 60
    assert seen["worker"] == "up" and seen["page"]["heartbeat"].endswith("s ago")
    assert {k: v for k, v in seen["page"].items() if k != "heartbeat"} == {
        "lag": "0",
        "watermark": "2024-06-01 02:01:00",
        "windows-open": "1",
        "announced": "2",
        "restarts": "0",
        "late": "1",
    }


def test_two_workers_of_the_job_show_as_one_row(
    kafka_bootstrap: str,
    topics: dict,
    stream_python: Path,
    tmp_path: Path,
    chromium,  # noqa: F811 - the fixture
):
    """The supervisor's worker and a second one on the same home (as a second coordinator's would
    be): the API and the page show the job up with two workers, each holding one partition, the
    lag summed and the job's watermark; then the second stops and the job shows one up."""
    from confluent_kafka import Producer

    spec = stream_spec(topics["clicks"], "lateness_s: 0, heartbeat_s: 0.5")
    settings = kafka_settings(tmp_path, kafka_bootstrap, topics, api_token=TOKEN)
    port = free_port()
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    both = [f"{topics['clicks']}:0", f"{topics['clicks']}:1"]

    def api() -> dict:
        [health] = httpx.get(f"{url}/api/streams", headers=auth).json()["streams"]
        return health

    with running(spec, settings, http=("127.0.0.1", port)):
        folder = settings.home / "streams" / "clicks_hourly"
        wait_for("the supervisor's worker", lambda: api()["partitions"] == both)
        config = json.loads((folder / "config.json").read_text())
        supervised = json.loads((folder / "supervisor.json").read_text())["pid"]
        del config["parent_pid"]
        second = start_worker(stream_python, config, "second")
        try:
            wait_for(
                "two workers up, a partition each",
                lambda: [len(w["partitions"]) for w in api()["workers"]] == [1, 1],
            )
            for partition, minute in ((0, 10), (1, 20), (0, 70), (1, 80), (0, 130), (1, 131)):
                producer.produce(
                    topics["clicks"], json.dumps({"ts": DAY + minute * 60}).encode(), partition=partition
                )
            producer.flush(30)
            two = wait_for(
                "hours 00 and 01 announced", lambda: (h := api())["announced"] == 2 and h["lag"] == 0 and h
            )
            cells, worker, title = stream_row(chromium, tmp_path / "profile", url)
        finally:
            stop_worker(second)
        one = wait_for(
            "one worker holding both",
            lambda: (h := api())["workers_up"] == 1 and h["partitions"] == both and h,
            60,
        )

    assert two["up"] and two["workers_up"] == 2 and sorted(two["partitions"]) == both
    assert (two["lag"], two["windows_open"], two["watermark"], two["events"]) == (0, 1, DAY + 131 * 60, 6)
    assert worker == "2 up" and all(p in title for p in both) and title.count("worker ") == 2
    assert (cells["lag"], cells["watermark"], cells["announced"]) == ("0", "2024-06-01 02:11:00", "2")
    assert {w["pid"] for w in two["workers"]} == {supervised, second.pid}
    assert one["up"] and [w["pid"] for w in one["workers"]] == [supervised]
