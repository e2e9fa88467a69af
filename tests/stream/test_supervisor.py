"""The stream supervisor without a broker: a worker that keeps dying is restarted with a
doubling backoff, and the reason it gave is in the service's log."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from coordinator.launchers.stream import supervisor_for
from coordinator.settings import Settings
from coordinator.spec import parse_spec
from coordinator.store import StateStore


def test_a_worker_that_keeps_dying_is_restarted_with_a_doubling_backoff(tmp_path: Path, caplog):
    """The worker's interpreter is a script that says why and exits 3 at once: the supervisor
    restarts it 0.2 s, 0.4 s, 0.8 s... later, and says each time what the worker said."""
    dying = tmp_path / "python"
    dying.write_text("#!/bin/sh\necho 'topic web.clicks does not exist' >&2\nexit 3\n")
    dying.chmod(0o755)
    spec = parse_spec(f"""
datasets: {{stream.clicks: {{partitioning: hourly}}}}
jobs:
  clicks_hourly:
    kind: stream
    outputs: [stream.clicks]
    settings: {{topic: web.clicks, python: {dying}, restart_backoff_s: 0.2, restart_backoff_max_s: 1.0}}
""")
    settings = Settings(home=tmp_path / "home", bus="local")
    settings.home.mkdir()
    caplog.set_level(logging.WARNING, "coordinator.stream")
    with StateStore(settings.resolved_state_url()) as store:
        supervisor = supervisor_for(spec, "clicks_hourly", settings, store).start()
        try:
            deadline = time.monotonic() + 10
            while supervisor.starts < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            supervisor.stop()
    gaps = [b - a for a, b in zip(supervisor.started_at, supervisor.started_at[1:], strict=False)]
    assert len(gaps) >= 4, gaps
    assert 0.2 <= gaps[0] < 0.6 and 0.4 <= gaps[1] < 0.9 and 0.8 <= gaps[2] < 1.5 and 1.0 <= gaps[3] < 1.6
    assert "the worker exited (3): topic web.clicks does not exist; restarting in 0.2 s" in caplog.text
    assert (supervisor.folder / "log").read_text().count(
        "topic web.clicks does not exist"
    ) == supervisor.starts
