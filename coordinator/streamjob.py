"""The stream worker: a faust-streaming app that turns a click topic into hourly partitions.

    python -m coordinator.streamjob CONFIG.json      (the `stream` kind's launcher starts it)

It runs in its own interpreter (`.venv-stream`, made by `scripts/bootstrap stream`), because
faust-streaming's dependencies cannot be installed beside the coordinator's: so this module
imports the standard library, faust and fastavro only — never the rest of the package.

faust is the runtime (consumer group, agents, the producer); completion is the project's, since
faust's own window close is fired by a wall-clock timer, lives in memory and is lost on a
rebalance. Here:

- **Window contents are idempotent.** Each event's (topic, partition, offset) is compared with
  the highest offset already applied for that partition, which is saved with the contents; a
  replay after a SIGKILL (faust commits offsets later than we apply) skips what was applied.
  A state made afresh (a first start, another host's folder, a deleted file) gets a new
  generation and with it a consumer group of its own, `<group>.<generation>`, so it reads the
  topic from its start rather than from offsets committed for a state it does not hold.
- **The watermark** is the largest event time seen minus the allowed lateness, saved with the
  state. The hourly window [h, h+1h) closes once the watermark reaches h+1h; an event older
  than the watermark is late: counted, not applied.
- **In batches**: events are applied in memory and saved (one fsync) every `batch_max` events,
  every `flush_s` seconds and whenever a window closes; only then are they acknowledged to
  faust (a `noack` stream), so faust never commits an offset the saved state does not hold.
- **Late data** (for a window already closed) is counted; with `late_data: reannounce` it also
  revises the window, kept `revise_within_s` behind the watermark, and the revision is announced
  at the next flush as a new version (its own folder `<window>.v<n>`, the event id suffixed
  `:v<n>`), so the batch jobs downstream re-run through the usual readiness rules.
- **Each closed window is announced once** as a completion event of the output dataset,
  partition `YYYY-MM-DDTHH`, with the event id `stream:<job>:<dataset>:<window>`. Order: the
  window's file written and flushed → the event produced and acknowledged by the broker → the
  window marked announced in the state → (later) the offsets committed by faust. A crash
  between the acknowledgement and the state write announces the window again under the same
  id, which the coordinator de-duplicates.

The event is written in the coordinator's wire format (topics/completion_event.v2.avsc behind
the 0xCE 0x02 header, keyed by dataset, the event id in the `event_id` header), so the
coordinator reads it as it reads any producer's.

The state file (`state.json`) and a heartbeat file (`heartbeat.json`: last beat, watermark,
windows open, counters) live in the run folder the launcher gives; the launcher reads the
heartbeat for the job's health.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HOUR_S = 3600
EVENT_MAGIC, SCHEMA_VERSION = 0xCE, 2
log = logging.getLogger("coordinator.streamjob")


# --------------------------------------------------------------------------- pure parts
def window_key(event_time: float) -> str:
    """The hourly partition key of an event time (UTC epoch seconds)."""
    return _hour_key(int(event_time // HOUR_S))


@functools.lru_cache(maxsize=4096)
def _hour_key(hour: int) -> str:
    return datetime.fromtimestamp(hour * HOUR_S, UTC).strftime("%Y-%m-%dT%H")


@functools.lru_cache(maxsize=4096)
def window_end(key: str) -> float:
    return datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC).timestamp() + HOUR_S


def parse_click(value: bytes, time_field: str, key_field: str | None) -> tuple[float, str]:
    """The event time and counted key of one message: a JSON object whose `time_field` is epoch
    seconds or an ISO 8601 time (a time without offset is UTC), and whose `key_field` (when
    set) is counted per value. ValueError saying why for anything else."""
    try:
        record = json.loads(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict) or time_field not in record:
        raise ValueError(f"not a JSON object with {time_field!r}")
    raw = record[time_field]
    key = "all" if key_field is None else str(record.get(key_field, ""))
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"{time_field!r} is neither epoch seconds nor an ISO 8601 time: {raw!r}")
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"{time_field!r} is not an ISO 8601 time: {raw!r}") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp(), key
    return float(raw), key


def event_id(job: str, dataset: str, window: str, version: int = 1) -> str:
    """The id of a window's announcement: one per (job, dataset, window, version)."""
    base = f"stream:{job}:{dataset}:{window}"
    return base if version == 1 else f"{base}:v{version}"


class WindowState:
    """What the worker has applied: per-partition offsets, open windows' counts, the watermark,
    and the windows already announced. Saved atomically (write, fsync, rename) to one file."""

    def __init__(self, path: Path, lateness_s: float, revise_within_s: float | None = None) -> None:
        self.path, self.lateness_s = path, lateness_s
        # None: late data is counted only. Else closed windows' contents are kept this long (event
        # time, behind the watermark), and late data revises them: a new version is announced.
        self.revise_within_s = revise_within_s
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        self.applied: dict[str, int] = data.get("applied", {})
        self.windows: dict[str, dict[str, int]] = data.get("windows", {})
        self.max_time: float | None = data.get("max_time")
        self.announced: set[str] = set(data.get("announced", []))
        self.closed: dict[str, dict[str, int]] = data.get("closed", {})  # kept for revisions
        self.versions: dict[str, int] = data.get("versions", {})  # the last version announced
        self.revised: set[str] = set(data.get("revised", []))  # closed windows late data changed
        # A fresh state reads the topic from its start under a consumer group of its own: the group's
        # committed offsets belong to the state they were committed with, and a state starting
        # mid-topic (another host's folder, a deleted file) would close windows missing their start.
        self.generation: str = data.get("generation") or uuid.uuid4().hex[:12]
        self.counts: dict[str, int] = data.get(
            "counts", {"events": 0, "late": 0, "rejected": 0, "replayed": 0}
        )

    @property
    def watermark(self) -> float | None:
        return None if self.max_time is None else self.max_time - self.lateness_s

    def seen(self, source: str, offset: int) -> bool:
        return offset <= self.applied.get(source, -1)

    def apply(self, source: str, offset: int, when: float | None, key: str) -> str:
        """Record one message; what became of it: applied, late, rejected (when None) or replayed."""
        if self.seen(source, offset):
            outcome = "replayed"
        elif when is None:
            outcome = "rejected"
        elif window_key(when) in self.announced or (
            self.watermark is not None and window_end(window_key(when)) <= self.watermark
        ):
            outcome = "late"  # its window has closed (or would have): counted, and maybe revised
            self._revise(window_key(when), key)
        else:
            outcome = "events"
            counts = self.windows.setdefault(window_key(when), {})
            counts[key] = counts.get(key, 0) + 1
            self.max_time = when if self.max_time is None else max(self.max_time, when)
        if outcome != "replayed":
            self.applied[source] = offset
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        return outcome

    def _revise(self, window: str, key: str) -> None:
        mark = self.watermark
        if self.revise_within_s is None or mark is None or window_end(window) < mark - self.revise_within_s:
            return
        counts = self.closed.setdefault(window, {})
        counts[key] = counts.get(key, 0) + 1
        self.revised.add(window)

    def revisions(self) -> list[str]:
        """Closed windows that late data changed, to announce again as a new version."""
        return sorted(self.revised)

    def revise(self, window: str) -> int:
        """Mark a revision announced; its version."""
        self.revised.discard(window)
        self.announced.add(window)
        self.versions[window] = self.versions.get(window, 0) + 1
        return self.versions[window]

    def closable(self) -> list[str]:
        """Open windows the watermark has passed, oldest first."""
        mark = self.watermark
        if mark is None:
            return []
        return sorted(w for w in self.windows if window_end(w) <= mark)

    def close(self, window: str) -> None:
        contents = self.windows.pop(window, {})
        self.announced.add(window)
        self.versions[window] = 1
        if self.revise_within_s is not None:
            self.closed[window] = contents
            horizon = (self.watermark or 0.0) - self.revise_within_s
            for old in [w for w in self.closed if window_end(w) < horizon]:
                del self.closed[old]
                self.versions.pop(old, None)

    def save(self) -> None:
        data = {
            "applied": self.applied,
            "windows": self.windows,
            "max_time": self.max_time,
            "announced": sorted(self.announced),
            "counts": self.counts,
            "generation": self.generation,
            "closed": self.closed,
            "versions": self.versions,
            "revised": sorted(self.revised),
        }
        write_atomically(self.path, json.dumps(data, sort_keys=True))


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the wire format
def completion_bytes(schema: Any, fields: dict[str, Any]) -> bytes:
    """A completion event as the coordinator's codec reads it: header + Avro binary."""
    import fastavro

    buffer = io.BytesIO()
    buffer.write(bytes((EVENT_MAGIC, SCHEMA_VERSION)))
    fastavro.schemaless_writer(buffer, schema, fields)
    return buffer.getvalue()


def load_event_schema(topics_dir: Path) -> Any:
    import fastavro

    raw = json.loads((topics_dir / f"completion_event.v{SCHEMA_VERSION}.avsc").read_text())
    return fastavro.parse_schema(raw, named_schemas={})


# --------------------------------------------------------------------------- the faust app
def build_app(config: dict[str, Any]) -> Any:
    import faust

    run_dir = Path(config["run_dir"])
    job, dataset = config["job"], config["dataset"]
    out_dir = Path(config["output_dir"]) / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    revise = config.get("revise_within_s") if config.get("late_data") == "reannounce" else None
    state = WindowState(run_dir / "state.json", float(config["lateness_s"]), revise)
    state.save()  # its generation names the consumer group below
    schema = load_event_schema(Path(config["topics_dir"]))
    time_field, key_field = config["time_field"], config.get("key_field")

    app = faust.App(
        f"{config['group']}.{state.generation}",
        broker=f"kafka://{config['bootstrap']}",
        store="memory://",
        datadir=str(run_dir / "faust"),
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=int(config["web_port"]),
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10,
        broker_commit_interval=float(config.get("commit_interval_s", 2.8)),
        broker_heartbeat_interval=3,
        topic_allow_declare=False,
    )
    source = app.topic(config["topic"], value_serializer="raw", key_serializer="raw")

    async def announce(window: str, counts: dict[str, int], version: int) -> str:
        """Write the window's folder, produce its completion event and wait for the broker's ack."""
        # a folder per window, as Spark reads a partition; a revision beside it, the first kept
        folder = out_dir / (window if version == 1 else f"{window}.v{version}")
        folder.mkdir(parents=True, exist_ok=True)
        column = key_field or "key"
        lines = [json.dumps({"hour": window, column: k, "events": n}) for k, n in sorted(counts.items())]
        write_atomically(folder / "part-0.jsonl", "".join(line + "\n" for line in lines))
        ident = event_id(job, dataset, window, version)
        value = completion_bytes(
            schema,
            {
                "event_id": ident,
                "dataset": dataset,
                "partition": window,
                "status": "succeeded",
                "producer": "stream",
                "producer_run_id": f"stream:{job}",
                "produced_at": datetime.now(UTC),
                "row_count": sum(counts.values()),
                "location": folder.resolve().as_uri(),
                "columns": None,
                "attributes": {
                    "job": job,
                    "window_end": str(int(window_end(window))),
                    "version": str(version),
                },
                "error": None,
            },
        )
        await app.producer.send_and_wait(
            config["events_topic"],
            dataset.encode(),
            value,
            partition=None,
            timestamp=None,
            headers=[("event_id", ident.encode())],
        )
        return ident

    pending: list[Any] = []  # events applied but not acknowledged to faust yet
    flushing = asyncio.Lock()
    batch_max = int(config.get("batch_max", 500))

    async def flush(stream: Any) -> None:
        """Save the state, announce the windows it closed, then acknowledge the events it holds:
        faust commits only acknowledged offsets, so nothing is committed before it is saved."""
        async with flushing:
            batch = pending[:]
            del pending[:]
            state.save()
            for window in state.closable():
                counts = state.windows.get(window, {})
                ident = await announce(window, counts, 1)
                state.close(window)
                state.save()
                log.info("window %s closed: %d events, announced as %s", window, sum(counts.values()), ident)
            for window in state.revisions():
                counts = state.closed.get(window, {})
                ident = await announce(window, counts, state.versions.get(window, 0) + 1)
                state.revise(window)
                state.save()
                log.info(
                    "window %s revised by late data: %d events, announced as %s",
                    window,
                    sum(counts.values()),
                    ident,
                )
            for event in batch:
                await stream.ack(event)

    streams: list[Any] = []

    @app.agent(source)
    async def clicks(stream: Any) -> None:
        manual = stream.noack()
        streams.append(manual)
        async for event in manual.events():
            message = event.message
            where = f"{message.topic}:{message.partition}"
            when: float | None
            try:
                when, key = parse_click(message.value, time_field, key_field)
            except ValueError as exc:
                log.warning("%s offset %d refused: %s", where, message.offset, exc)
                when, key = None, ""
            outcome = state.apply(where, message.offset, when, key)
            if outcome == "late":
                log.info(
                    "%s offset %d is late (watermark %s): counted, not applied",
                    where,
                    message.offset,
                    state.watermark,
                )
            pending.append(event)
            if len(pending) >= batch_max or state.closable():  # revisions: at the next flush
                await flush(manual)

    @app.timer(interval=float(config.get("flush_s", 0.2)))
    async def flush_quiet() -> None:
        """A batch left when the topic goes quiet is saved and acknowledged all the same."""
        if pending and streams:
            await flush(streams[0])

    @app.timer(interval=float(config.get("heartbeat_s", 2.0)))
    async def heartbeat() -> None:
        parent = config.get("parent_pid")
        if parent is not None and os.getppid() != parent:
            log.error("the coordinator (pid %d) is gone; exiting", parent)
            os._exit(1)
        beat = {
            "at": time.time(),
            "pid": os.getpid(),
            "watermark": state.watermark,
            "windows_open": len(state.windows),
            "announced": len(state.announced),
            **state.counts,
        }
        write_atomically(run_dir / "heartbeat.json", json.dumps(beat))

    return app


def die_with_parent(parent: int | None) -> None:
    """SIGTERM this worker when the coordinator that started it dies (Linux's PR_SET_PDEATHSIG),
    so that a killed coordinator leaves no worker behind to race the one its successor starts;
    a parent already gone (it died before this call) ends the worker at once."""
    if parent is None:
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the heartbeat's parent check still ends it
        pass
    if os.getppid() != parent:
        log.error("the coordinator (pid %d) is gone; exiting", parent)
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m coordinator.streamjob CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(args[0]).read_text())
    die_with_parent(config.get("parent_pid"))
    from faust import Worker

    app = build_app(config)
    Worker(app, loglevel="INFO").execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
