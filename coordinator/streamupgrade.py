"""A stream job's state in the previous release's layout, converted to the folder of parts.

The previous release kept a job's state in one file, `<run folder>/state.json`: the offset applied
per source partition, the open windows' contents (for the job as a whole), each partition's
largest event time, the watermark, the windows announced, the closed windows' contents kept for
revisions, the versions announced and the windows late data had revised since. A worker of this
release keeps it in a folder (coordinator/streamstate.py). Started on a run folder that holds
the old file and a state folder without `job.json`, it converts the old file before it reads the
state, holding the folder's lock, in this order:

1. the old file read and checked whole (a file it cannot read or make sense of is refused,
   `LegacyStateError` naming it and why: the worker stops saying so, rather than start afresh
   and announce again every window the old file says were announced);
2. one part file per source partition written, then `job.json` last (each written to a temporary
   file, fsynced, renamed into place): `job.json` is what says the new layout is whole, so a
   crash before it converts again at the next start;
3. the old file renamed to `state.json.migrated` (kept, never deleted), and the folder fsynced.
   A crash between 2 and 3 leaves both: the next start finds `job.json` of the old file's
   generation and finishes the rename.

The conversion keeps the old generation, and with it the consumer group `<group>.<generation>`,
so the worker resumes from the offsets the old worker committed and skips what the old file
says was applied: no window is announced again and no click is counted twice. The open windows'
contents, which the old file kept for the job as a whole, go to the part of the first source
partition (a window's contents are the sum of every part's, whoever holds them), with the old
counts by outcome. A closed window kept for revisions keeps its contents as that part's late
counts (the old file kept them together), `merged` saying all of them announced, except for a
window the old file had to revise still: its revision is announced at the first flush, as the
old worker would have done.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from coordinator.streamstate import OUTCOMES, folder_lock, part_path
from coordinator.streamwindows import window_end, write_atomically

LEGACY_NAME = "state.json"
MIGRATED_SUFFIX = ".migrated"
log = logging.getLogger("coordinator.streamjob")


class LegacyStateError(Exception):
    """The previous layout's state file cannot be converted: `path`, and why (`reason`)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def upgrade(legacy: Path, folder: Path, lateness_s: float) -> bool:
    """Convert `legacy` (the old `state.json`) into the state folder `folder` when the folder holds
    no `job.json` yet; True when it did. LegacyStateError when the old file cannot be converted."""
    legacy, folder = Path(legacy), Path(folder)
    if not legacy.exists():
        return False
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    with folder_lock(folder):
        if not legacy.exists():  # another worker of the job converted it meanwhile
            return False
        job = folder / "job.json"
        if job.exists():
            _finish(legacy, job)
            return False
        data = read_legacy(legacy)
        saved, parts = convert(data, lateness_s, legacy)
        for part in parts:  # 2. every part, then job.json
            write_atomically(part_path(folder, part["source"]), json.dumps(part, sort_keys=True))
        write_atomically(job, json.dumps(saved, sort_keys=True))
        _retire(legacy)  # 3.
    log.warning(
        "%s (the previous release's state) converted into %s: %d partitions, watermark %s, "
        "%d windows announced, %d open; the old file kept as %s%s",
        legacy,
        folder,
        len(parts),
        saved["watermark"],
        len(saved["announced"]),
        len(parts[0]["windows"]) if parts else 0,
        legacy.name,
        MIGRATED_SUFFIX,
    )
    return True


def _finish(legacy: Path, job: Path) -> None:
    """Both layouts there: the rename of a conversion that crashed before it, or an old file that
    is not the state in use (left where it is, said once per start)."""
    try:
        old, new = (json.loads(path.read_text()).get("generation") for path in (legacy, job))
        ours = old == new
    except (OSError, ValueError, AttributeError):
        ours = False
    if ours:
        _retire(legacy)
        log.warning("%s was converted before a crash: now kept as %s%s", legacy, legacy.name, MIGRATED_SUFFIX)
    else:
        log.warning(
            "%s (the previous release's state) is not converted: %s holds the state", legacy, job.parent
        )


def _retire(legacy: Path) -> None:
    os.replace(legacy, legacy.with_name(legacy.name + MIGRATED_SUFFIX))
    directory = os.open(legacy.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --------------------------------------------------------------------------- reading it
def read_legacy(path: Path) -> dict[str, Any]:
    """The old file's contents, every field checked as the old worker wrote it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise LegacyStateError(path, f"cannot be read: {exc}") from None
    except ValueError as exc:
        raise LegacyStateError(path, f"is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise LegacyStateError(path, f"is not a JSON object but {type(data).__name__}")
    checks = {
        "applied": lambda v: _mapping(v, _source, _offset),
        "partition_time": lambda v: _mapping(v, _source, _number),
        "windows": lambda v: _mapping(v, _window, _counts),
        "closed": lambda v: _mapping(v, _window, _counts),
        "versions": lambda v: _mapping(v, _window, _offset),
        "counts": lambda v: _mapping(v, lambda k: k in OUTCOMES, _offset),
        "announced": lambda v: isinstance(v, list) and all(_window(w) for w in v),
        "revised": lambda v: isinstance(v, list) and all(_window(w) for w in v),
        "watermark": lambda v: v is None or _number(v),
        "max_time": lambda v: v is None or _number(v),
        "generation": lambda v: isinstance(v, str),
    }
    for field, check in checks.items():
        if field in data and not check(data[field]):
            raise LegacyStateError(
                path, f"its {field!r} is not what the previous release wrote: {data[field]!r:.200}"
            )
    return data


def _mapping(value: Any, key_ok: Any, value_ok: Any) -> bool:
    return isinstance(value, dict) and all(key_ok(k) and value_ok(v) for k, v in value.items())


def _source(key: str) -> bool:
    topic, _, partition = key.rpartition(":")
    return bool(topic) and partition.isdigit()


def _window(key: Any) -> bool:
    try:
        window_end(key)
    except (TypeError, ValueError):
        return False
    return True


def _offset(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= -1


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _counts(value: Any) -> bool:
    return _mapping(value, lambda k: isinstance(k, str), _offset)


# --------------------------------------------------------------------------- converting it
def convert(
    data: dict[str, Any], lateness_s: float, path: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The old file's contents as `job.json` and the parts' files (module docstring)."""
    applied, times = data.get("applied", {}), data.get("partition_time", {})
    sources = sorted(set(applied) | set(times))
    announced = set(data.get("announced", []))
    windows = {w: c for w, c in data.get("windows", {}).items() if c and w not in announced}
    closed, revised = data.get("closed", {}), set(data.get("revised", []))
    counts = {**dict.fromkeys(OUTCOMES, 0), **data.get("counts", {})}
    if not sources and (windows or closed or any(counts.values())):
        raise LegacyStateError(path, "holds windows or counts but no partition's offset")
    max_time = data.get("max_time")
    # a state saved before the watermark was kept resumed at this (as the old worker did)
    watermark = data.get("watermark", None if max_time is None else max_time - lateness_s)
    parts = [
        {
            "source": source,
            "applied": applied.get(source, -1),
            "time": times.get(source),
            "windows": {},
            "late": {},
            "counts": dict.fromkeys(OUTCOMES, 0),
            "owner": None,
            "generation": -1,
            "claimed_at": 0.0,
        }
        for source in sources
    ]
    merged: dict[str, dict[str, int]] = {}
    if parts:
        carrier = parts[0]
        carrier["windows"], carrier["counts"] = windows, counts
        carrier["late"] = {w: dict(c) for w, c in closed.items()}
        merged = {w: {} if w in revised else {carrier["source"]: sum(c.values())} for w, c in closed.items()}
    saved = {
        # none (a file the old worker never wrote so): a new one, as the old worker would have made
        "generation": data.get("generation") or uuid.uuid4().hex[:12],
        "watermark": watermark,
        "announced": sorted(announced),
        "versions": data.get("versions", {}),
        "closed": {w: {} for w in closed},  # their contents are the carrier's late counts
        "merged": merged,
        "sources": sources,
    }
    return saved, parts
