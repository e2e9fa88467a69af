"""Audit rows the HTTP side of a coordinator process hands to its engine, written in the engine's
next transaction.

POST /events audits each event it published (who, when) once the bus has it. As a transaction
of its own, that audit competed with the one the engine opens for the same event a moment later
— the record-and-claim that starts the event's run — for the interpreter, the database and, on
SQLite, the file's write lock (1-2 ms of the launch, bench/launch.py). Handed over here, the rows
are written in that very transaction (or, when none comes, in one the loop opens for them at its
next turn), and the request answers once that has committed, as before: an audit row is never
lost, and never written for a publish the bus refused (the request hands it over only after).

`put` returns a future the engine resolves once its transaction has committed, or fails with
that transaction's error. A request that waited `HANDOVER_S` in vain `withdraw`s its rows and
writes them itself (an engine stopping, or stuck in a long turn), unless the engine has taken
them already: then its transaction decides.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from coordinator.store import audit
from coordinator.store.store import Tx

HANDOVER_S = 2.0  # how long a request waits for the engine's transaction before writing its own


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of coordinator/store/audit.py's table, as `audit.add` takes it."""

    actor: str
    action: str
    job: str | None
    partition: str | None
    detail: str | None
    at: float


class AuditQueue:
    """Thread-safe: requests `put` and `withdraw`, the engine's loop `take`s."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[list[AuditEntry], Future[None]]] = []

    def put(self, rows: list[AuditEntry]) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
            self._pending.append((rows, future))
        return future

    def withdraw(self, future: Future[None]) -> bool:
        """Take back rows not taken yet (True); False once the engine has them."""
        with self._lock:
            for i, (_, pending) in enumerate(self._pending):
                if pending is future:
                    del self._pending[i]
                    return True
        return False

    def take(self) -> list[tuple[list[AuditEntry], Future[None]]]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    def __bool__(self) -> bool:
        return bool(self._pending)


def write_audits(tx: Tx, rows: Iterable[AuditEntry]) -> None:
    """The rows, in the caller's transaction."""
    for r in rows:
        audit.add(tx, r.actor, r.action, job=r.job, partition=r.partition, detail=r.detail, at=r.at)


def settle(taken: list[tuple[list[AuditEntry], Future[None]]], error: BaseException | None = None) -> None:
    """Tell the requests whose rows were in a transaction how it ended."""
    for _, future in taken:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error if isinstance(error, Exception) else RuntimeError(repr(error)))
