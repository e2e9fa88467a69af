"""A running stream job's health on the web UI, in a real headless Chromium: the worker up, its
heartbeat's age, consumer lag, watermark, windows open and announced, restarts and late events,
as the JSON API (which needs the token: 401 without) and the page show them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from coordinator.launchers.stream import free_port
from tests.observe.test_ui_browser import ARGS, CHROMIUM, chromium  # noqa: F401 - the fixture
from tests.stream.streams import DAY, kafka_settings, running, state, stream_spec, wait_for

TOKEN = "stream-ui-token"


def test_the_page_shows_a_running_stream_jobs_health(
    kafka_bootstrap: str, topics: dict, tmp_path: Path, chromium  # noqa: F811 - the fixture
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
        context = chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True
        )
        try:
            page = context.new_page()
            page.goto(f"{url}/ui")
            page.fill("#token", TOKEN)
            page.dispatch_event("#token", "change")
            row = page.locator('#streams tr[data-job="clicks_hourly"]')
            row.wait_for()
            seen["page"] = {
                name: row.locator(f"td.{name}").inner_text()
                for name in ("heartbeat", "lag", "watermark", "windows-open", "announced", "restarts", "late")
            }
            seen["worker"] = row.locator("td").nth(1).inner_text()
        finally:
            context.close()

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
