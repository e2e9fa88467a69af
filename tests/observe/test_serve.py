"""`coord serve`: one process with the engine, the UI, /metrics and the observers, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.observe.journey import publish, raw_events
from tests.observe.receiver import Receiver
from tests.observe.server import free_port

WANT = ('coord_runs{job="load",state="failed"} 1.0', 'coord_runs{job="prep",state="succeeded"} 2.0',
        'coord_runs_finished_total{job="prep",state="succeeded"} 2.0')


def test_serve_runs_the_pipeline_and_serves_ui_metrics_and_alerts(env):
    tmp_path, spec, settings = env
    publish(settings, raw_events())
    port = free_port()
    with Receiver() as receiver:
        proc_env = {**os.environ, "COORD_ALERT_WEBHOOKS": f'["{receiver.url}"]'}
        argv = [sys.executable, "-c", "from coordinator.cli import main; main()", "serve", str(spec),
                "--port", str(port)]
        proc = subprocess.Popen(argv, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            metrics = ""
            while time.monotonic() < deadline:
                try:
                    metrics = httpx.get(f"{base}/metrics", timeout=2).text
                except httpx.HTTPError:
                    metrics = ""
                if all(line in metrics for line in WANT) and any(
                        b["kind"] == "run-failed" for b in receiver.bodies):
                    break
                time.sleep(0.3)
            assert all(line in metrics for line in WANT), metrics
            assert [b["job"] for b in receiver.bodies if b["kind"] == "run-failed"] == ["load"]
            page = httpx.get(f"{base}/ui", timeout=5)
            assert page.status_code == 200 and "/ui/static/app.js" in page.text
            assert httpx.get(f"{base}/ui/static/app.js", timeout=5).status_code == 200
            graph = httpx.get(f"{base}/api/graph", params={"partition": "2024-01-01"}, timeout=5).json()
            assert graph["jobs"]["load"]["state"] == "failed" and "<svg" in graph["svg"]
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
