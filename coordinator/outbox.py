"""The outbox relay: events the coordinator emits reach the bus after the state that caused them.

Events are written to coord_outbox in the same transaction as the run's state change, then
`OutboxRelay.drain` publishes them, waits for the bus to have them (flush) and only then marks
them sent. A crash between publish and mark re-publishes the same events (same event ids),
which every consumer — this coordinator included — de-duplicates: nothing lost, nothing doubled.
"""

from __future__ import annotations

from coordinator.publish import Publisher
from coordinator.store.store import StateStore


class OutboxRelay:
    def __init__(self, store: StateStore, publisher: Publisher) -> None:
        self.store, self.publisher = store, publisher

    def drain(self, batch: int = 5000) -> int:
        """Publish every pending event; returns how many. Raises BusError/StoreError (retry later)."""
        sent = 0
        while True:
            with self.store.begin() as tx:
                pending = tx.outbox_pending(batch)
                if not pending:
                    return sent
                self.publisher.publish_many(e for _, e in pending)
                self.publisher.flush()  # durable on the bus before it counts as sent
                tx.outbox_mark_sent([i for i, _ in pending])
            sent += len(pending)
            if len(pending) < batch:
                return sent
