"""The outbox: events the coordinator emits reach the bus after the state that caused them.

Events are written to coord_outbox in the same transaction as the run's state change (the
engine's `_transact`); only after that commit does `Outbox.publish` hand them to the bus,
without waiting. Their acknowledgements come back through the producer's delivery callback
while the loop goes on; `delivered` collects the ids the bus has confirmed, and the next
turn's transaction deletes them from the outbox (`tx.outbox_mark_sent_events`). So an event
counts as sent only once the bus has it.

What is left unsent — a crash between commit and acknowledgement, a bus outage, an event the
bus refused — stays in the outbox and is published again by `relay` (`OutboxRelay.drain`:
publish, flush, then mark sent). A re-published event has the same event id, which every
consumer, this coordinator included, de-duplicates: nothing lost, nothing doubled. An event no
retry can send — one that does not encode (over max_event_bytes) — is logged as an error and
taken out instead, so the relay goes on with the others (it stays recorded in the store). Only what
this instance owns is relayed, and what dead ones left: the events of runs a live peer instance
owns are its own to publish (they are in flight to it), so an instance that adopts a dead lease
beside two or more live ones does not put the peers' events on the bus a second time.

Events wait while jobs start: publishing sets off the producer's send, the broker's append and
acknowledgement, and the consumers' fetch of the event (this coordinator's own included) — work
that, on a machine of few cores, competed with the interpreters of the jobs just started. On 2
cores, traced in `coord serve` on Kafka + PostgreSQL, the span from the spawn to the job's first
statement was 14.2 ms when the turn published at once, 12.5-13.1 ms when it did not. Measured
against the same build holding nothing (bench/launch.py --baseline, rounds in turn, twice):
single 0.7 / 1.1 ms sooner, AND 0.7 / 0.7, hop 2.0 / 0.8; on the embedded bus, whose publish is
a local append, no difference beyond the runs' noise. So a turn that started jobs
(`publish(started=True)`) holds what it publishes, and what is held already, until no job has
been started for `LAUNCH_QUIET_S` — a quiet spell, not a fixed delay: a delay fixed at the start
put the publishing right into the next start of a chain of short jobs — and for at most
`MAX_HOLD_S`, so that a coordinator starting jobs without pause still publishes (`release`, each
turn). The events are committed in the outbox already, so holding them changes when the bus
sees them, never what it gets; they keep their order; the loop's end, a relay (which publishes
what the outbox holds unsent) or a stale lease hand them on or leave them to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from coordinator.errors import BusError, EventError, StoreError
from coordinator.events import CompletionEvent
from coordinator.publish import Publisher
from coordinator.store.store import StateStore, Tx
from coordinator.turn import unless_fatal

log = logging.getLogger("coordinator.engine")
NOT_YET = "outbox not published yet, it stays for the relay"
LAUNCH_QUIET_S = 0.02  # events wait until no job was started for this long (see the docstring)
MAX_HOLD_S = 0.2  # ... or until the oldest held has waited this long


Others = Callable[[Tx, Sequence[CompletionEvent]], set[str]]


class OutboxRelay:
    """`others(tx, events)`: the ids among them that a live peer instance is publishing itself
    (left to it: store/leases.py `peers_events`)."""

    def __init__(self, store: StateStore, publisher: Publisher, others: Others | None = None) -> None:
        self.store, self.publisher, self.others = store, publisher, others

    def drain(self, batch: int = 5000) -> int:
        """Publish every pending event (not a live peer's); returns how many. Raises
        BusError/StoreError (retry later)."""
        sent = 0
        while True:
            with self.store.begin() as tx:
                pending = tx.outbox_pending(batch)
                if not pending:
                    return sent
                theirs = self.others(tx, [e for _, e in pending]) if self.others else set()
                mine = [(i, e) for i, e in pending if e.event_id not in theirs]
                try:
                    self.publisher.publish_many(e for _, e in mine)
                    published = len(mine)
                except EventError:  # one cannot be encoded: publish_many queued none of them
                    published = self._publish_encodable(mine)
                self.publisher.flush()  # durable on the bus before it counts as sent
                tx.outbox_mark_sent([i for i, _ in mine])
            sent += published
            if len(pending) < batch or not mine:
                return sent

    def _publish_encodable(self, rows: list[tuple[int, CompletionEvent]]) -> int:
        """Publish those of `rows` that encode; how many. One that does not (over
        max_event_bytes, say) never will, on any retry, so it leaves the outbox with the rest
        instead of stopping the relay — and the engine — before every event behind it. It stays
        recorded in the store; the error names it."""
        encode, good = self.publisher.codec.encode, []
        for _, event in rows:
            try:
                encode(event)
            except EventError as exc:
                log.error(
                    "outbox: event %s dropped, it cannot be published: %s (%s)",
                    event.event_id,
                    exc.reason,
                    exc.detail,
                )
                continue
            good.append(event)
        return self.publisher.publish_many(good)


class Outbox:
    """The engine's side of the outbox. `publisher()` builds the publisher on first use."""

    def __init__(self, store: StateStore, publisher: Callable[[], Publisher]) -> None:
        self.store, self._publisher = store, publisher
        self.dirty = True  # unsent events may wait (at start-up: whatever a previous run left)
        self.publishing = 0  # events handed to the bus, delivery not yet confirmed
        self._acked: list[str] = []  # ids of events the bus confirmed, not yet marked sent
        self.may_publish: Callable[[], bool] = lambda: True  # the lease's gate (availability.py)
        self.others: Others | None = None  # a live peer's events, which the relay leaves to it
        self._held: list[CompletionEvent] = []  # waiting for a quiet spell (see the docstring)
        self._held_since = 0.0  # time.monotonic() when the oldest of them was held
        self._quiet_at = 0.0  # time.monotonic() from which no job has been started for a while

    def publish(self, events: Sequence[CompletionEvent], started: bool = False) -> None:
        """Hand committed outbox events to the bus without waiting; `started`: the turn that
        committed them started jobs, so they (and what waits already) are held until `release`
        finds a quiet spell."""
        now = time.monotonic()
        if started:
            self._quiet_at = now + LAUNCH_QUIET_S
        if not events:
            return
        if self._held or now < self._quiet_at:
            if not self._held:
                self._held_since = now
            self._held += events
            return
        self._send(events)

    @property
    def holding(self) -> bool:
        """Events wait for a quiet spell to be handed to the bus."""
        return bool(self._held)

    def release(self, everything: bool = False) -> None:
        """Hand on what is held once no job was started for LAUNCH_QUIET_S, or the oldest has
        waited MAX_HOLD_S (`everything`: now, as the loop ends)."""
        if not self._held:
            return
        now = time.monotonic()
        if everything or now >= self._quiet_at or now - self._held_since >= MAX_HOLD_S:
            events, self._held = self._held, []
            self._send(events)

    def _send(self, events: Sequence[CompletionEvent]) -> None:
        if not self.may_publish():  # a stale lease: they stay in the outbox for the relay
            self.dirty = True
            return
        try:
            self._publisher().publish_many(events, self._on_delivery)
            self.publishing += len(events)
        except BusError as exc:
            self.dirty = True
            unless_fatal(exc, NOT_YET)
        except EventError:  # none was queued; the relay publishes the others and drops that one
            self.dirty = True

    def _on_delivery(self, event: CompletionEvent, error: str | None) -> None:
        self.publishing -= 1
        if error is None:
            self._acked.append(event.event_id)
        else:  # it stays unsent in the outbox; the relay publishes it again
            log.warning("bus: event %s not delivered (%s)", event.event_id, error)
            self.dirty = True

    def delivered(self, wait: bool = False) -> list[str]:
        """Ids of the events published earlier that the bus has confirmed since; with `wait`,
        all of them. The caller marks them sent."""
        if not self.publishing and not self._acked:
            return []
        try:
            if wait:
                self._publisher().flush()
            else:
                self._publisher().poll()
        except BusError as exc:
            self.dirty = True
            unless_fatal(exc, NOT_YET)
        ids, self._acked = self._acked, []
        return ids

    @property
    def settled(self) -> bool:
        """Everything this engine published is confirmed and marked sent: what the outbox holds
        unsent is not on its way from here (a relay now doubles nothing of this engine's)."""
        return not self.publishing and not self._acked and not self._held

    def relay(self) -> int:
        """Publish whatever the outbox holds unsent from before (a crash, a bus outage), if
        anything may; how many."""
        if not self.dirty or not self.may_publish():
            return 0
        self.dirty = False
        self._held.clear()  # unsent in the outbox too: the relay publishes them, in their order
        try:
            return OutboxRelay(self.store, self._publisher(), self.others).drain()
        except BusError as exc:
            self.dirty = True
            unless_fatal(exc, NOT_YET)
            return 0

    def settle(self) -> int:
        """Wait for what was published and mark it sent (when the loop returns); how many. A
        store that fails here (the loop may be ending because of it) leaves the events unsent
        in the outbox, published again by the next start: a duplicate, never a loss."""
        self.release(everything=True)
        try:
            sent = self.delivered(wait=True)
        except BusError:  # fatal, and already logged: what is unconfirmed stays in the outbox
            sent = []
        if sent:
            try:
                with self.store.begin() as tx:
                    tx.outbox_mark_sent_events(sent)
            except StoreError as exc:
                log.warning("outbox: %d published events not marked sent (%s)", len(sent), exc)
        return len(sent)
