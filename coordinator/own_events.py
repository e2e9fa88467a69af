"""The coordinator's own output events, remembered so that they are skipped when they come back.

A run's output events are recorded (and their readiness evaluated) in the transaction that
records the run's end; the bus then delivers them back to this coordinator like any event.
Remembering their ids lets intake skip them by the event id header, without decoding them
(`skip`), and drop any decoded one before it reaches the store (`drop`). The memory is bounded:
an event forgotten is recorded again as a no-op replay, never a second run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from coordinator.events import CompletionEvent

KEPT = 100_000
_MISSING = object()


class OwnEvents:
    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._ids: dict[str, None] = {}  # insertion order: the oldest is forgotten first

    def remember(self, events: Iterable[CompletionEvent]) -> None:
        ids = self._ids
        for e in events:
            ids[e.event_id] = None
        while len(ids) > self.kept:
            del ids[next(iter(ids))]

    def skip(self, event_id: bytes) -> bool:
        """Whether a message (by its event id header) is one of ours: then it is not decoded.
        Each comes back once, so it is forgotten here."""
        ids = self._ids
        return bool(ids) and ids.pop(event_id.decode(), _MISSING) is not _MISSING

    def drop(self, events: Sequence[CompletionEvent]) -> Sequence[CompletionEvent]:
        """`events` without ours (those that came back without the header)."""
        ids = self._ids
        if not ids:
            return events
        kept = []
        for e in events:
            if e.event_id in ids:
                del ids[e.event_id]
            else:
                kept.append(e)
        return kept
