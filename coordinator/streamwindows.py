"""The stream worker's own parts, without faust: hourly windows, the files it writes, the
completion event's bytes, and the order in which a flush saves, announces and acknowledges
(coordinator/streamjob.py says why; the state it keeps is coordinator/streamstate.py).

Imported by the worker in its own interpreter: the standard library, fastavro and pyarrow only.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
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


def window_folder(template: str, window: str, version: int = 1) -> Path:
    """Where a window's version is written: the output template with `{partition}` replaced by
    the window (a revision by `<window>.v<n>`, beside the first version, which is kept)."""
    return Path(template.replace("{partition}", window if version == 1 else f"{window}.v{version}"))


class Announcer:
    """Writes a window's file and announces it: the worker's `send` produces to the events topic
    and returns once the broker has acknowledged (tests give their own). `template` is the
    window's folder with `{partition}` in it (the job's output template, resolved)."""

    def __init__(self, template: str, job: str, dataset: str, key_column: str, schema: Any, send: Send):
        self.template, self.job, self.dataset, self.key_column = template, job, dataset, key_column
        self.schema, self.send = schema, send

    async def __call__(self, window: str, counts: dict[str, int], version: int) -> str:
        folder = window_folder(self.template, window, version)
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


Ends = Callable[[], Awaitable["dict[str, int | None] | None"]]


async def flush_batch(
    state: Any,
    batch: list[tuple[str, Any]],
    announce: Callable[[str, dict[str, int], int], Awaitable[str]],
    ack: Callable[[Any], Awaitable[None]],
    ends: Ends,
) -> list[str]:
    """Save the parts, announce each window closed or revised, then acknowledge the batch's events
    (`(source, event)` pairs); the ids announced. Holding the state folder's lock:
    0. the parts owned here written (a part another worker claimed is dropped, unwritten), the
       others read, and the watermark moved over every partition on end offsets measured before
       (`peek`, `exchange`, `settle`: streamstate.py);
    then per window: 1. its file written and flushed and 2. its event acknowledged by the broker
    (`announce`), 3. marked announced in the saved state. Then, the lock released: 4. the batch's
    events acknowledged, and faust commits only acknowledged offsets. Those of a part dropped, or
    never owned here, are acknowledged too, unapplied (else faust's next rebalance would wait for
    them): another worker claimed the part in a newer group generation, so the broker refuses a
    commit from this one's, and that owner reads them from the offsets committed for it."""
    announced = []
    state.peek()  # what the others applied, then every partition's end offset, outside the lock
    measured = await ends()
    async with state.alocked():
        state.exchange()  # 0.
        state.settle(measured)
        for window in state.closable():
            counts = state.contents(window)
            ident = await announce(window, counts, 1)
            announced.append(ident)
            state.close(window, counts)  # 3.
            log.info("window %s closed: %d events, announced as %s", window, sum(counts.values()), ident)
        for window in state.revisions():
            counts = state.revised_contents(window)
            announced.append(await announce(window, counts, state.versions.get(window, 0) + 1))
            state.revise(window)  # 3.
            log.info(
                "window %s revised by late data: %d events, announced as %s",
                window,
                sum(counts.values()),
                announced[-1],
            )
    for _source, event in batch:
        await ack(event)  # 4.
    return announced
