"""What the HTTP side of a coordinator process hands to its engine: the events POST /events and
the Fivetran webhook accepted, with their audit rows, recorded in the engine's next turn.

An event posted to a coordinator that runs an engine does not make the round trip through the
bus before its run can start. The engine records it in the first transaction of its next turn
(woken for it), as it records the events it makes itself (`Coordinator.record_own`): new to
the store, it is written with its outbox row, its readiness evaluated and its runs created and
claimed in that one transaction; after the commit the runs start and the outbox publishes it
to the bus, where it comes back and is skipped as the coordinator's own (own_events.py), and
where another instance sharing the store finds it recorded already (the event id is the store's
unique key). The request answers 202 once that transaction has committed: the event is durable
then, in the store and its outbox, which publishes it even across a crash or a bus outage.
Through the bus, the same event waited for the broker's acknowledgement and the consumer's
fetch first (~2.7 ms on Kafka, ~3 ms on the embedded bus: bench/launch.py). The audit rows go
into that same transaction, so they never compete with it for the database.

`put` gives a future the engine resolves once its transaction has committed, or fails with that
transaction's error; None when no loop is taking (not started, stopped, draining). Then, or
when the engine does not take the events within `HANDOVER_S` (the request `withdraw`s them), or
when its transaction failed, the request publishes them to the bus itself and writes its audit
in a transaction of its own, as a process without an engine does. An event is so recorded once
either way: a withdrawn one was never in a transaction, a failed transaction committed nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from coordinator.events import CompletionEvent
from coordinator.store import audit
from coordinator.store.store import Tx

HANDOVER_S = 2.0  # how long a request waits for the engine's transaction before doing it all itself


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of coordinator/store/audit.py's table, as `audit.add` takes it."""

    actor: str
    action: str
    job: str | None
    partition: str | None
    detail: str | None
    at: float


@dataclass(frozen=True, slots=True)
class Handed:
    """One request's events and audit rows, and the future its answer waits on."""

    events: Sequence[CompletionEvent]
    rows: Sequence[AuditEntry]
    future: Future[None] = field(default_factory=Future)


class Handover:
    """Thread-safe: requests `put` and `withdraw`; the engine's loop `open`s it while it runs,
    `take`s in its turns and `close`s it when it returns. `wake` is the loop's: its poll of the
    bus returns at once, so a handed event does not wait for a poll's timeout."""

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self.wake = wake
        self._lock = threading.Lock()
        self._pending: list[Handed] = []
        self._open = False

    def put(self, events: Sequence[CompletionEvent], rows: Sequence[AuditEntry]) -> Future[None] | None:
        handed = Handed(events, rows)
        with self._lock:
            if not self._open:
                return None
            self._pending.append(handed)
        self.wake()
        return handed.future

    def withdraw(self, future: Future[None]) -> bool:
        """Take back what was not taken yet (True); False once the engine has it."""
        with self._lock:
            for i, pending in enumerate(self._pending):
                if pending.future is future:
                    del self._pending[i]
                    return True
        return False

    def take(self) -> list[Handed]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    @property
    def is_open(self) -> bool:
        """Whether a loop takes what is handed (while it runs, but draining)."""
        return self._open

    def open(self) -> None:
        with self._lock:
            self._open = True

    def close(self, why: str) -> None:
        """No more handing: what waits is given back to its requests (they do it themselves)."""
        with self._lock:
            self._open = False
            left, self._pending = self._pending, []
        settle(left, RuntimeError(why))

    def __bool__(self) -> bool:
        return bool(self._pending)


def write_audits(tx: Tx, rows: Iterable[AuditEntry]) -> None:
    """The rows, in the caller's transaction."""
    audit.add_many(tx, [audit.row(r.actor, r.action, None, r.job, r.partition, r.detail, r.at) for r in rows])


def settle(taken: Iterable[Handed], error: BaseException | None = None) -> None:
    """Tell the requests whose events were in a transaction how it ended."""
    for handed in taken:
        future = handed.future
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error if isinstance(error, Exception) else RuntimeError(repr(error)))
