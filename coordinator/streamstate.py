"""A stream job's state, in a folder that every worker of the job reads and writes: one file per
source partition (its part) and one for the job, each written holding the folder's lock.

    <state_dir>/job.json                the group generation, the watermark, the windows announced
                                        (versions, revisions merged) and the partitions ever held
    <state_dir>/parts/<topic>.<p>.json  one source partition: the offset applied, its largest event
                                        time, its counts for each open window, its late counts, its
                                        counts by outcome, and its owner (a worker's token, the
                                        group generation it was assigned in)
    <state_dir>/.lock                   flock(2): every write, and every announcement, holds it

(The previous release's single `state.json` is converted into this layout at start: streamupgrade.py.)

Why per partition. One worker runs per job (the supervisor's lease), but a second one can live:
a worker of a coordinator that lost its lease and is not dead yet, a handover, an operator's own.
Two workers of a job share its consumer group, so faust splits the source partitions between
them and moves them on each rebalance. So:

- **A partition's file is written only by its owner**, the worker that claimed it when faust
  assigned it. A claim from an older group generation than the file's is refused (a stale
  rebalance: the worker exits, acknowledging nothing, and rejoins when restarted). A worker whose
  partition another claimed drops it at its next sync without writing it, and applies none of
  its events any more: the new owner, assigned it in a newer group generation, reads them from
  the offsets committed for it (the broker refuses a commit from an older generation). A claim
  loads the file: the new owner resumes where the old one saved (offsets applied, event times,
  window contents), and a replay is skipped by its offset.
- **A window's completeness is global**: the watermark is computed under the lock from every
  partition's file and end offset (`advance`), so a worker holding some partitions never closes a
  window that others still feed, and the window's contents are the sum of every partition's part.
- **Each window is announced once**: under the lock, by the first worker that finds it closable;
  job.json records it before the lock is released, so every other worker then sees it announced.
- **Data applied after its window was announced** (by a worker whose view was older) is found at
  that worker's next sync, before its part is written: counted late, as it would have been.
- **The lock is held for file writes and announcements only** (the end offsets of partitions
  held elsewhere are asked before it, after a `peek` at their files). A worker paused while
  holding it (a few ms of each flush) holds the others back until it resumes or dies (flock is
  released with the process): a stall, never a loss nor a double announcement.
- **Revisions are crash-safe**: each part keeps its late counts per window (cumulative, within the
  revision horizon) and job.json what of each part a revision announced, so a window is revised
  when some part holds late data not announced yet, written with the offsets that brought it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

from coordinator.streamwindows import window_end, window_key, write_atomically

OUTCOMES = ("events", "late", "rejected", "replayed")
STALE_CLAIM_S = 600.0  # a newer generation's claim older than this is from a group since recreated
log = logging.getLogger("coordinator.streamjob")
Counts = dict[str, int]


def _add(into: Counts, counts: Counts, sign: int = 1) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + sign * n
        if into[key] == 0:
            del into[key]


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """The state folder's lock (flock: released with the process, whatever ends it)."""
    fd = os.open(Path(folder) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def part_path(folder: Path, source: str) -> Path:
    """The file of one source partition (`topic:partition`) in a state folder."""
    topic, _, partition = source.rpartition(":")
    return Path(folder) / "parts" / f"{topic}.{partition}.json"


class Part:
    """One source partition's share of the job's state (its file's contents), and what was
    applied to it since its file was last written (`fresh`, kept in memory only)."""

    def __init__(self, source: str, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.source = source
        self.applied: int = data.get("applied", -1)
        self.time: float | None = data.get("time")  # the largest event time applied
        self.windows: dict[str, Counts] = data.get("windows", {})
        self.late: dict[str, Counts] = data.get("late", {})  # per window, within the revision horizon
        self.counts: Counts = {**dict.fromkeys(OUTCOMES, 0), **data.get("counts", {})}
        self.owner: str | None = data.get("owner")
        self.generation: int = data.get("generation", -1)
        self.claimed_at: float = data.get("claimed_at", 0.0)
        self.fresh: dict[str, Counts] = {}
        self.dirty = False

    def dump(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "applied": self.applied,
            "time": self.time,
            "windows": self.windows,
            "late": self.late,
            "counts": self.counts,
            "owner": self.owner,
            "generation": self.generation,
            "claimed_at": self.claimed_at,
        }


class WindowState:
    """The job's state as one worker sees it: the partitions it owns (`parts`, applied to in
    memory, written at each sync), the others' as their files said at the last sync (`others`),
    and the job's own (watermark, windows announced). Methods that read or write files expect
    the caller to hold the lock (`locked`, `alocked`), except `claim`, which takes it."""

    def __init__(
        self,
        folder: Path,
        lateness_s: float,
        revise_within_s: float | None = None,
        owner: str | None = None,
    ) -> None:
        self.folder, self.lateness_s = Path(folder), lateness_s
        # None: late data is counted only. Else late data revises a window within this long (event
        # time) behind the watermark, and a new version of it is announced.
        self.revise_within_s = revise_within_s
        self.owner = owner or uuid.uuid4().hex
        self.parts: dict[str, Part] = {}
        self.others: dict[str, Part] = {}
        self.ends: dict[str, int | None] | None = None  # each partition's end offset, last known
        self.peeked: dict[str, int] = {}  # the offset other workers' parts said they applied
        (self.folder / "parts").mkdir(parents=True, exist_ok=True)
        self.mark: float | None = None
        with self.locked():
            exists = self._read_job()
            # A fresh state reads the topic from its start under a consumer group of its own: the
            # group's committed offsets belong to the state they were committed with, and a state
            # starting mid-topic (another host's folder, a lost file) would close windows missing
            # their start. The parts still there skip what they hold as replays.
            missing = [s for s in self.sources if not self._part_path(s).exists()]
            if not exists or missing:
                if missing:
                    log.warning("the state of %s is missing: reading the topic from its start", missing)
                self.generation = uuid.uuid4().hex[:12]
                self._write_job()

    # ------------------------------------------------------------------ the folder
    def locked(self) -> contextlib.AbstractContextManager[None]:
        return folder_lock(self.folder)

    @contextlib.asynccontextmanager
    async def alocked(self) -> AsyncIterator[None]:
        """The lock, waited for without blocking the event loop (faust's heartbeats run on it)."""
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.002)
            yield
        finally:
            os.close(fd)

    def _part_path(self, source: str) -> Path:
        return part_path(self.folder, source)

    def _read_part(self, source: str) -> Part | None:
        try:
            return Part(source, json.loads(self._part_path(source).read_text()))
        except FileNotFoundError:
            return None

    def _write_part(self, part: Part) -> None:
        write_atomically(self._part_path(part.source), json.dumps(part.dump(), sort_keys=True))
        part.dirty = False

    def _read_parts(self) -> dict[str, Part]:
        found = {}
        for path in (self.folder / "parts").glob("*.json"):
            data = json.loads(path.read_text())
            found[data["source"]] = Part(data["source"], data)
        return found

    def _read_job(self) -> bool:
        path = self.folder / "job.json"
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        self.generation: str = data.get("generation", "")
        saved = data.get("watermark")
        if saved is not None and (self.mark is None or saved > self.mark):
            self.mark = saved
        self.saved_mark: float | None = saved
        self.announced: set[str] = set(data.get("announced", []))
        self.versions: dict[str, int] = data.get("versions", {})  # the last version announced
        self.closed: dict[str, Counts] = data.get("closed", {})  # first versions, kept for revisions
        self.merged: dict[str, Counts] = data.get("merged", {})  # per window: each part's late announced
        self.sources: set[str] = set(data.get("sources", []))
        return bool(data)

    def _write_job(self) -> None:
        data = {
            "generation": self.generation,
            "watermark": self.mark,
            "announced": sorted(self.announced),
            "versions": self.versions,
            "closed": self.closed,
            "merged": self.merged,
            "sources": sorted(self.sources),
        }
        write_atomically(self.folder / "job.json", json.dumps(data, sort_keys=True))

    # ------------------------------------------------------------------ ownership
    def claim(self, sources: Iterable[str], generation: int = -1) -> set[str]:
        with self.locked():
            return self.claim_locked(sources, generation)

    async def aclaim(self, sources: Iterable[str], generation: int = -1) -> set[str]:
        async with self.alocked():
            return self.claim_locked(sources, generation)

    def claim_locked(self, sources: Iterable[str], generation: int) -> set[str]:
        """Own exactly `sources` (faust's new assignment, in group `generation`); the sources whose
        events held but not saved are stale: reloaded from their file, let go, or not taken. A part
        this worker still owns on disk keeps its memory (the file plus what was applied since)."""
        wanted, reloaded = set(sources), set()
        for source in [s for s in self.parts if s not in wanted]:
            del self.parts[source]
            reloaded.add(source)
        for source in sorted(wanted):
            disk = self._read_part(source)
            if disk is not None and disk.owner == self.owner and source in self.parts:
                self.parts[source].generation = max(generation, disk.generation)
                continue
            newer = disk is not None and disk.owner not in (None, self.owner) and disk.generation > generation
            if newer and disk is not None and time.time() - disk.claimed_at < STALE_CLAIM_S:
                log.warning(
                    "%s is claimed in group generation %d, newer than ours (%d): not taken",
                    source,
                    disk.generation,
                    generation,
                )
                self.parts.pop(source, None)
                reloaded.add(source)
                continue
            part = disk or Part(source)
            part.owner, part.generation, part.claimed_at = self.owner, generation, time.time()
            self._write_part(part)
            if source in self.parts:
                reloaded.add(source)
            self.parts[source] = part
            self.others.pop(source, None)
        if not wanted <= self.sources:
            self.sources |= wanted
            self._write_job()
        return reloaded

    # ------------------------------------------------------------------ applying events
    @property
    def watermark(self) -> float | None:
        return self.mark

    def known(self) -> dict[str, Part]:
        return {**self.others, **self.parts}

    def is_closed(self, window: str) -> bool:
        return window in self.announced or (self.mark is not None and window_end(window) <= self.mark)

    def apply(self, source: str, offset: int, when: float | None, key: str) -> str:
        """Record one message; what became of it: applied (`events`), late, rejected (when None),
        replayed, or `foreign` (a partition not owned here: not applied, its owner reads it)."""
        part = self.parts.get(source)
        if part is None:
            return "foreign"
        if offset <= part.applied:
            outcome = "replayed"
        elif when is None:
            outcome = "rejected"
        elif self.is_closed(window := window_key(when)):
            outcome = "late"  # its window has closed (or would have): counted, and maybe revised
            self._late(part, window, {key: 1})
        else:
            outcome = "events"
            _add(part.windows.setdefault(window, {}), {key: 1})
            _add(part.fresh.setdefault(window, {}), {key: 1})
            if part.time is None or when > part.time:
                part.time = when
        if outcome != "replayed":
            part.applied = offset
        part.counts[outcome] += 1
        part.dirty = True
        return outcome

    def _late(self, part: Part, window: str, counts: Counts) -> None:
        if self._within_horizon(window):
            _add(part.late.setdefault(window, {}), counts)

    def _within_horizon(self, window: str) -> bool:
        mark = self.mark
        return (
            self.revise_within_s is not None
            and mark is not None
            and window_end(window) >= mark - self.revise_within_s
        )

    # ------------------------------------------------------------------ the watermark
    def advance(self, ends: dict[str, int | None] | None) -> float | None:
        """Move the watermark on `ends`, every source partition's end offset (None for one not
        known yet, which counts as behind; `ends` None: nothing moves). Each partition behind its
        end holds it at its largest event time (one with no event yet holds it where it is); with
        none behind, the largest event time seen; less the lateness. Never moves back."""
        if ends is None:
            return self.mark
        known = self.known()
        # another worker's partition is caught up only by what its file said before `ends` were
        # measured (`peek`): an end offset older than the offset applied says nothing
        applied = {s: self.peeked.get(s, -1) for s in self.others}
        applied.update({s: p.applied for s, p in self.parts.items()})
        behind = [s for s, end in ends.items() if end is None or applied.get(s, -1) + 1 < end]
        if behind:
            times = [known[s].time if s in known else None for s in behind]
            if any(t is None for t in times):
                return self.mark
            candidate: float | None = min(t for t in times if t is not None)
        else:
            candidate = max((p.time for p in known.values() if p.time is not None), default=None)
        if candidate is not None and (self.mark is None or candidate - self.lateness_s > self.mark):
            self.mark = candidate - self.lateness_s
        return self.mark

    def closable(self) -> list[str]:
        """Windows with contents in some part that the watermark has passed, not announced yet."""
        mark = self.mark
        if mark is None:
            return []
        found = {w for part in self.known().values() for w in part.windows}
        return sorted(w for w in found if w not in self.announced and window_end(w) <= mark)

    def contents(self, window: str) -> Counts:
        """A window's contents: the sum of every partition's part of it."""
        total: Counts = {}
        for part in self.known().values():
            _add(total, part.windows.get(window, {}))
        return total

    # ------------------------------------------------------------------ a sync, under the lock
    def sync(self, ends: dict[str, int | None] | None) -> list[str]:
        """`exchange`, then `settle` on `ends` (measured after a `peek`)."""
        lost = self.exchange()
        self.settle(ends)
        return lost

    def peek(self) -> None:
        """Read what the other workers' parts say they applied, before the end offsets are asked
        for (no lock: each file is replaced whole), so that the broker's call is made outside it."""
        self.peeked = {s: p.applied for s, p in self._read_parts().items() if s not in self.parts}

    def exchange(self) -> list[str]:
        """Write the parts owned here and read the others'; the sources lost (another worker
        claimed them: not written, their events not applied here any more). What was applied for
        a window announced or passed meanwhile is made late first."""
        self._read_job()
        passed_at = self.saved_mark
        lost = []
        for source, part in list(self.parts.items()):
            disk = self._read_part(source)
            if disk is not None and disk.owner != self.owner:
                log.warning("%s was claimed by another worker: dropped here, unsaved", source)
                del self.parts[source]
                lost.append(source)
                continue
            self._settle(part, passed_at)
            if part.dirty or disk is None:
                self._write_part(part)
        self.others = {s: p for s, p in self._read_parts().items() if s not in self.parts}
        return lost

    def settle(self, ends: dict[str, int | None] | None) -> float | None:
        """Move the watermark over every partition and save it. `ends` must be measured after a
        `peek`: an end offset older than the offset a part says it applied would call a partition
        caught up that has more to come."""
        self.ends = ends
        before = self.saved_mark
        self.advance(ends)
        if self.mark != before:
            self._write_job()
            self.saved_mark = self.mark
        return self.mark

    def _settle(self, part: Part, passed_at: float | None) -> None:
        for window, counts in part.fresh.items():
            if window in self.announced or (passed_at is not None and window_end(window) <= passed_at):
                n = sum(counts.values())
                _add(part.windows.setdefault(window, {}), counts, -1)
                part.counts["events"] -= n
                part.counts["late"] += n
                self._late(part, window, counts)
                part.dirty = True
        part.fresh = {}
        for window in [w for w in part.windows if w in self.announced or not part.windows[w]]:
            del part.windows[window]
            part.dirty = True
        for window in [w for w in part.late if not self._within_horizon(w)]:
            del part.late[window]
            part.dirty = True

    def close(self, window: str, contents: Counts) -> None:
        """Mark a window announced (its first version) and save the job's state."""
        self.announced.add(window)
        self.versions[window] = 1
        if self.revise_within_s is not None:
            self.closed[window] = contents
            for old in [w for w in self.closed if not self._within_horizon(w)]:
                for kept in (self.closed, self.versions, self.merged):
                    kept.pop(old, None)
        self._write_job()

    def revisions(self) -> list[str]:
        """Windows that some part holds late data for that no version announced yet."""
        pending = set()
        for source, part in self.known().items():
            for window, counts in part.late.items():
                merged = self.merged.get(window, {}).get(source, 0)
                if self._within_horizon(window) and sum(counts.values()) != merged:
                    pending.add(window)
        return sorted(pending)

    def revised_contents(self, window: str) -> Counts:
        total = dict(self.closed.get(window, {}))
        for part in self.known().values():
            _add(total, part.late.get(window, {}))
        return total

    def revise(self, window: str) -> int:
        """Mark a revision announced, save the job's state; its version."""
        self.announced.add(window)
        self.versions[window] = self.versions.get(window, 0) + 1
        self.merged[window] = {
            source: sum(part.late[window].values())
            for source, part in self.known().items()
            if window in part.late
        }
        self._write_job()
        return self.versions[window]

    # ------------------------------------------------------------------ what it says
    def counts(self) -> Counts:
        total = dict.fromkeys(OUTCOMES, 0)
        for part in self.known().values():
            for outcome in OUTCOMES:
                total[outcome] += part.counts.get(outcome, 0)
        return total

    def open_windows(self) -> list[str]:
        return sorted({w for p in self.known().values() for w in p.windows if w not in self.announced})


def summary(folder: Path) -> dict[str, Any]:
    """A stream job's saved state in one dict (for its health, tests and benchmarks): generation,
    watermark, announced, counts, open windows with their contents, each partition's offset
    applied and largest event time; {} when there is none yet."""
    folder = Path(folder)
    try:
        job = json.loads((folder / "job.json").read_text())
        parts = [json.loads(p.read_text()) for p in sorted((folder / "parts").glob("*.json"))]
    except (OSError, ValueError):
        return {}
    windows: dict[str, Counts] = {}
    counts = dict.fromkeys(OUTCOMES, 0)
    for part in parts:
        for window, contents in part.get("windows", {}).items():
            if window not in job.get("announced", []):
                _add(windows.setdefault(window, {}), contents)
        for outcome in OUTCOMES:
            counts[outcome] += part.get("counts", {}).get(outcome, 0)
    return {
        "generation": job.get("generation"),
        "watermark": job.get("watermark"),
        "announced": job.get("announced", []),
        "versions": job.get("versions", {}),
        "counts": counts,
        "windows": windows,
        "applied": {p["source"]: p["applied"] for p in parts},
        "partition_time": {p["source"]: p["time"] for p in parts if p.get("time") is not None},
        "owners": {p["source"]: p.get("owner") for p in parts},
    }
