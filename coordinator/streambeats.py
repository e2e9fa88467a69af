"""A stream job's heartbeats: one file per worker in the job's run folder, and the job's health
read from them as a whole.

    <run folder>/heartbeat-<worker token>.json    one worker's last beat (every `heartbeat_s`)

One file per worker because two workers of one job can share a run folder (two coordinator
instances on one home: a handover, a coordinator that lost its lease and is not dead yet), and
one shared file would show whichever wrote last. A beat names its worker (the token its state
parts are owned by), its pid, the partitions it holds and its consumer lag over them, and the
job's view it last synced (watermark, windows open and announced, messages by outcome, which
are every partition's: coordinator/streamstate.py).

The job's health (`job_health`): the workers up (a beat within STALE_BEAT_S), the partitions each
holds, their lags summed, the job's watermark (the largest any says: it only moves forward) and
the freshest beat's view of windows and counts. With no worker up, the last beat's values, `up`
false. A beat older than FORGET_BEAT_S is removed by a live worker of the job (a worker's token
is new at each start, so every restart leaves one behind), as is the previous release's
`heartbeat.json`.

Imported by the worker in its own interpreter too: the standard library only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from coordinator.streamwindows import write_atomically

STALE_BEAT_S = 10.0  # a heartbeat older than this: its worker is not up (the default beat is 2 s)
FORGET_BEAT_S = 600.0  # a heartbeat older than this is removed by a live worker of the job
OUTCOMES = ("events", "late", "rejected", "replayed")


def beat_path(run_dir: Path, worker: str) -> Path:
    return Path(run_dir) / f"heartbeat-{worker}.json"


def write_beat(run_dir: Path, worker: str, beat: dict[str, Any], now: float | None = None) -> None:
    """Write this worker's beat, and remove the beats of workers gone longer than FORGET_BEAT_S."""
    now = time.time() if now is None else now
    write_atomically(beat_path(run_dir, worker), json.dumps({**beat, "worker": worker}))
    for path in Path(run_dir).glob("heartbeat*.json"):
        try:
            if now - path.stat().st_mtime > FORGET_BEAT_S:
                path.unlink()
        except FileNotFoundError:  # another worker removed it first
            pass


def read_beats(run_dir: Path) -> list[dict[str, Any]]:
    """Every worker's last beat in the run folder (a file being replaced or unreadable: left out)."""
    beats = []
    for path in sorted(Path(run_dir).glob("heartbeat-*.json")):
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(beat, dict) and isinstance(beat.get("at"), int | float):
            beats.append(beat)
    return beats


def job_health(beats: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """The job's health from its workers' beats (module docstring); {} before the first beat."""
    if not beats:
        return {}
    fresh = [b for b in beats if now - b["at"] < STALE_BEAT_S]
    latest = max(beats, key=lambda b: b["at"])
    live = fresh or [latest]
    lags = [b.get("lag") for b in live]
    marks = [b["watermark"] for b in live if b.get("watermark") is not None]
    workers = [
        {
            "worker": b.get("worker"),
            "pid": b.get("pid"),
            "heartbeat_age_s": round(max(0.0, now - b["at"]), 1),
            "partitions": b.get("partitions", []),
            "lag": b.get("lag"),
        }
        for b in sorted(live, key=lambda b: str(b.get("worker")))
    ]
    return {
        **{key: latest.get(key) for key in ("windows_open", "announced", *OUTCOMES)},
        "at": latest["at"],
        "lag": None if any(lag is None for lag in lags) else sum(lags),
        "watermark": max(marks, default=None),
        "partitions": sorted(p for b in live for p in b.get("partitions", [])),
        "workers_up": len(fresh),
        "workers": workers,
    }


def stream_health(run_dir: Path, now: float | None = None) -> dict[str, Any]:
    return job_health(read_beats(run_dir), time.time() if now is None else now)
