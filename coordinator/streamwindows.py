"""The stream worker's own parts, without faust: hourly windows, the watermark, lateness and
replays (WindowState), the files it writes, the completion event's bytes, and the order in which
a flush writes, announces, saves and acknowledges (coordinator/streamjob.py says why).

Imported by the worker in its own interpreter: the standard library, fastavro and pyarrow only.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
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
        self.partition_time: dict[str, float] = data.get("partition_time", {})  # largest per source
        # a state saved before the watermark was kept resumes at what it then was
        old = None if self.max_time is None else self.max_time - lateness_s
        self.mark: float | None = data.get("watermark", old)
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
        return self.mark

    def advance(self, lagging: list[str] | None) -> float | None:
        """Move the watermark on what the consumer knows: `lagging` names the assigned partitions
        still behind their end offset (None: the assignment is not known yet, nothing moves).
        Each holds it at its largest event time (one with no event yet holds it where it is);
        with none lagging, the largest event time seen. Never moves back."""
        if lagging is None:
            return self.mark
        if lagging:
            times = [self.partition_time.get(source) for source in lagging]
            if any(t is None for t in times):
                return self.mark
            candidate: float | None = min(t for t in times if t is not None)
        else:
            candidate = self.max_time
        if candidate is not None and (self.mark is None or candidate - self.lateness_s > self.mark):
            self.mark = candidate - self.lateness_s
        return self.mark

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
            if when > self.partition_time.get(source, when - 1):
                self.partition_time[source] = when
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
            "partition_time": self.partition_time,
            "watermark": self.mark,
            "announced": sorted(self.announced),
            "counts": self.counts,
            "generation": self.generation,
            "closed": self.closed,
            "versions": self.versions,
            "revised": sorted(self.revised),
        }
        write_atomically(self.path, json.dumps(data, sort_keys=True))


def write_atomically(path: Path, text: str) -> None:
    _replace_synced(path, lambda out: out.write(text.encode()))


def write_window_parquet(folder: Path, window: str, column: str, counts: dict[str, int]) -> Path:
    """A window's contents as `folder/part-0.parquet` (hour, `column`, events), written whole
    and flushed to disk before this returns: the announcement that follows may name it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted(counts)
    table = pa.table(
        {
            "hour": pa.array([window] * len(keys), pa.string()),
            column: pa.array(keys, pa.string()),
            "events": pa.array([counts[k] for k in keys], pa.int64()),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-0.parquet"
    _replace_synced(path, lambda out: pq.write_table(table, out))
    return path


def _replace_synced(path: Path, write: Any) -> None:
    """Write through `write(binary file)` to a hidden temporary file beside `path` (readers such as
    Spark skip names starting with a dot), fsync it, rename it over `path`, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        write(out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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


# --------------------------------------------------------------------------- a flush, in order
Send = Callable[[str, bytes], Awaitable[None]]  # (event id, value): returns once the broker acked


class Announcer:
    """Writes a window's file and announces it: the worker's `send` produces to the events topic
    and returns once the broker has acknowledged (tests give their own)."""

    def __init__(self, out_dir: Path, job: str, dataset: str, key_column: str, schema: Any, send: Send):
        self.out_dir, self.job, self.dataset, self.key_column = out_dir, job, dataset, key_column
        self.schema, self.send = schema, send

    async def __call__(self, window: str, counts: dict[str, int], version: int) -> str:
        # a folder per window, as Spark reads a partition; a revision beside it, the first kept
        folder = self.out_dir / (window if version == 1 else f"{window}.v{version}")
        write_window_parquet(folder, window, self.key_column, counts)  # 1. written and flushed
        ident = event_id(self.job, self.dataset, window, version)
        value = completion_bytes(
            self.schema,
            {
                "event_id": ident,
                "dataset": self.dataset,
                "partition": window,
                "status": "succeeded",
                "producer": "stream",
                "producer_run_id": f"stream:{self.job}",
                "produced_at": datetime.now(UTC),
                "row_count": sum(counts.values()),
                "location": folder.resolve().as_uri(),
                "columns": None,
                "attributes": {
                    "job": self.job,
                    "window_end": str(int(window_end(window))),
                    "version": str(version),
                },
                "error": None,
            },
        )
        await self.send(ident, value)  # 2. produced and acknowledged by the broker
        return ident


async def flush_batch(
    state: WindowState,
    batch: list[Any],
    announce: Callable[[str, dict[str, int], int], Awaitable[str]],
    ack: Callable[[Any], Awaitable[None]],
) -> list[str]:
    """Save the state, announce each window it closed or late data revised, then acknowledge the
    batch's events; the ids announced. Per window: 1. its file written and flushed and 2. its event
    acknowledged by the broker (`announce`), 3. marked announced in the saved state; 4. only then
    the batch acknowledged, and faust commits only acknowledged offsets."""
    state.save()
    announced = []
    for window in state.closable():
        counts = state.windows.get(window, {})
        announced.append(await announce(window, counts, 1))
        state.close(window)
        state.save()  # 3.
        log.info("window %s closed: %d events, announced as %s", window, sum(counts.values()), announced[-1])
    for window in state.revisions():
        counts = state.closed.get(window, {})
        announced.append(await announce(window, counts, state.versions.get(window, 0) + 1))
        state.revise(window)
        state.save()  # 3.
        log.info(
            "window %s revised by late data: %d events, announced as %s",
            window,
            sum(counts.values()),
            announced[-1],
        )
    for event in batch:
        await ack(event)  # 4.
    return announced
