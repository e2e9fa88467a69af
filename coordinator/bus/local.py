"""The embedded bus: a durable append-only log in one SQLite file, for single-machine use.

Same contract as Kafka (see base.py): per-topic partitions chosen by key hash, so one key's
messages keep their order; per-group committed offsets, so a consumer that dies before
`commit` sees its messages again; `flush` returns once the messages are committed to the file.

Several processes may share the file (WAL journal, busy timeout, writes in short IMMEDIATE
transactions). A consumer group here has no partition assignment: every consumer of a group
reads every partition from the group's committed offsets, which suits the one-coordinator-per-
machine deployment this bus is for; several members of one group would see the same messages.
A consumer waiting for messages is woken by the producer that commits them, in whichever
process it runs (local_wake.py), so the embedded bus hands a message over as soon as it is durable.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

from coordinator.bus.base import Bus, Consumer, Delivered, Message, Producer, TopicSpec
from coordinator.bus.local_wake import Waker, wake_all, wake_folder
from coordinator.errors import BusError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, retention_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key BLOB, value BLOB NOT NULL, headers TEXT, timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
"""

_AUTO_FLUSH = 1000  # queued messages that trigger a write without waiting for flush()
_RETENTION_EVERY_S = 60.0  # how often a producer prunes messages past their topic's retention


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    """Stable for a key (CRC32, like librdkafka's `consistent` partitioner); round-robin without one."""
    if key is None:
        return counter % partitions
    return zlib.crc32(key) % partitions


def _headers_out(headers: Sequence[tuple[str, bytes]]) -> str | None:
    return json.dumps([[k, v.hex()] for k, v in headers]) if headers else None


def _headers_in(text: str | None) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, bytes.fromhex(v)) for k, v in json.loads(text)) if text else ()


def _bus_error(path: Path, exc: BaseException) -> BusError:
    """SQLite's "database is locked/busy" passes (another process holds the write lock past the
    busy timeout); a file that cannot be opened, is not a database or is full will fail again."""
    text = str(exc)
    retriable = isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)
    return BusError(f"local bus {path}: {exc}", retriable=retriable)


class LocalBus(Bus):
    """A bus in the SQLite file at `path` (created on first use, with its folder)."""

    def __init__(
        self,
        path: str | Path,
        default_partitions: int = 3,
        default_retention_ms: int = 7 * 24 * 3600 * 1000,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.default_partitions, self.default_retention_ms = default_partitions, default_retention_ms
        self.busy_timeout_s = busy_timeout_s
        self.wake_folder = wake_folder(self.path)  # consumers' FIFOs: committed messages wake them
        self._initialised = False

    def connect(self) -> sqlite3.Connection:
        """A new connection with the bus's pragmas; the schema is created on the first one."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (what at-least-once needs); FULL would
            # also survive power loss at several times the cost per flush.
            conn.execute("PRAGMA synchronous=NORMAL")
            if not self._initialised:
                conn.executescript(_SCHEMA)
                self._initialised = True
            return conn
        except (sqlite3.Error, OSError) as exc:
            raise _bus_error(self.path, exc) from exc

    def producer(
        self, *, max_message_bytes: int | None = None, delivery_timeout_s: float | None = None
    ) -> LocalProducer:
        return LocalProducer(self)  # no size limit; a flush either writes everything or raises

    def consumer(
        self, group_id: str, topics: Sequence[str], *, instance_id: str | None = None
    ) -> LocalConsumer:
        return LocalConsumer(self, group_id, topics)  # no rebalances: every member reads everything

    def read_tail(self, topic: str, last: int) -> list[Message]:
        conn = self.connect()
        try:
            rows = conn.execute(
                "SELECT m.partition, m.offset, m.key, m.value, m.headers, m.timestamp_ms"
                " FROM messages m JOIN partitions p ON p.topic = m.topic AND p.partition = m.partition"
                " WHERE m.topic = ? AND m.offset >= p.next_offset - ? ORDER BY m.partition, m.offset",
                (topic, last),
            ).fetchall()
        except sqlite3.Error as exc:
            raise _bus_error(self.path, exc) from exc
        finally:
            conn.close()
        return [Message(topic, p, o, k, v, _headers_in(h), ts) for p, o, k, v, h, ts in rows]

    def ensure_topics(self, topics: Sequence[TopicSpec]) -> None:
        conn = self.connect()
        try:
            with _immediate(conn):
                for spec in topics:
                    _create_topic(conn, spec.name, spec.partitions, spec.retention_ms)
        except sqlite3.Error as exc:
            raise _bus_error(self.path, exc) from exc
        finally:
            conn.close()


class _immediate:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK: take the write lock up front, so concurrent writers
    wait on the busy timeout instead of failing halfway through."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _create_topic(conn: sqlite3.Connection, name: str, partitions: int, retention_ms: int) -> int:
    """Create `name` unless it exists; the topic's partition count either way."""
    row = conn.execute("SELECT partitions FROM topics WHERE name = ?", (name,)).fetchone()
    if row:
        return row[0]
    conn.execute("INSERT INTO topics VALUES (?, ?, ?)", (name, partitions, retention_ms))
    conn.executemany("INSERT INTO partitions VALUES (?, ?, 0)", [(name, p) for p in range(partitions)])
    return partitions


class LocalProducer(Producer):
    """Queues messages in memory; `flush` (or a full queue) writes them in one transaction."""

    def __init__(self, bus: LocalBus) -> None:
        self.bus = bus
        self._conn: sqlite3.Connection | None = None
        self._queue: list[tuple[str, bytes, bytes | None, str | None, int]] = []
        self._lock = threading.Lock()
        self._waiting: list[Delivered] = []  # callbacks of queued messages
        self._durable: list[Delivered] = []  # callbacks of written messages, not called yet
        self._counter = 0
        self._partitions: dict[str, int] = {}
        self._pruned_at = 0.0

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        on_delivery: Delivered | None = None,
    ) -> None:
        if not isinstance(value, bytes | bytearray):
            raise BusError(f"message values are bytes, got {type(value).__name__}", retriable=False)
        with self._lock:
            self._queue.append((topic, bytes(value), key, _headers_out(headers), int(time.time() * 1000)))
            if on_delivery is not None:
                self._waiting.append(on_delivery)
            if len(self._queue) >= _AUTO_FLUSH:
                self._write()

    def flush(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._write()
        self._serve()

    def poll(self) -> None:
        """The embedded bus writes on flush: confirming deliveries is writing what is queued."""
        self.flush()

    def _serve(self) -> None:
        with self._lock:
            done, self._durable = self._durable, []
        for callback in done:
            callback(None)

    def close(self, timeout: float = 30.0) -> None:
        try:
            self.flush(timeout)
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _write(self) -> None:
        if not self._queue:
            return
        if self._conn is None:
            self._conn = self.bus.connect()
        conn = self._conn
        try:
            with _immediate(conn):
                next_offsets: dict[tuple[str, int], int] = {}
                rows = []
                for topic, value, key, headers, ts in self._queue:
                    partitions = self._partitions.get(topic)
                    if partitions is None:
                        partitions = _create_topic(
                            conn, topic, self.bus.default_partitions, self.bus.default_retention_ms
                        )
                        self._partitions[topic] = partitions
                    partition = partition_for(key, partitions, self._counter)
                    self._counter += 1
                    slot = (topic, partition)
                    offset = next_offsets.get(slot)
                    if offset is None:
                        offset = conn.execute(
                            "SELECT next_offset FROM partitions WHERE topic = ? AND partition = ?", slot
                        ).fetchone()[0]
                    rows.append((topic, partition, offset, key, value, headers, ts))
                    next_offsets[slot] = offset + 1
                conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.executemany(
                    "UPDATE partitions SET next_offset = ? WHERE topic = ? AND partition = ?",
                    [(o, t, p) for (t, p), o in next_offsets.items()],
                )
                if time.monotonic() - self._pruned_at > _RETENTION_EVERY_S:
                    self._prune(conn)
        except sqlite3.Error as exc:
            raise _bus_error(self.bus.path, exc) from exc
        self._queue.clear()
        self._durable += self._waiting
        self._waiting = []
        wake_all(self.bus.wake_folder)  # committed: the consumers read them now, not at their next look

    def _prune(self, conn: sqlite3.Connection) -> None:
        now_ms = int(time.time() * 1000)
        conn.execute(
            "DELETE FROM messages"
            " WHERE timestamp_ms < ? - (SELECT retention_ms FROM topics WHERE name = topic)",
            (now_ms,),
        )
        self._pruned_at = time.monotonic()


class LocalConsumer(Consumer):
    """Reads every partition of its topics from the group's committed offsets, oldest first."""

    def __init__(self, bus: LocalBus, group_id: str, topics: Sequence[str]) -> None:
        self.bus, self.group_id, self.topics = bus, group_id, list(topics)
        self._conn: sqlite3.Connection | None = None
        self._positions: dict[tuple[str, int], int] = {}
        self._closed = False
        self._waker: Waker | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise BusError("consumer is closed", retriable=False)
        if self._conn is None:
            self._conn = self.bus.connect()
            self._waker = Waker(self.bus.wake_folder)  # after connect: the bus's folder exists
        return self._conn

    def _ends(self, conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
        marks = ",".join("?" * len(self.topics))
        rows = conn.execute(
            f"SELECT topic, partition, next_offset FROM partitions WHERE topic IN ({marks})", self.topics
        ).fetchall()
        ends = {(t, p): n for t, p, n in rows}
        for slot in ends.keys() - self._positions.keys():
            row = conn.execute(
                "SELECT offset FROM group_offsets WHERE group_id = ? AND topic = ? AND partition = ?",
                (self.group_id, *slot),
            ).fetchone()
            self._positions[slot] = row[0] if row else 0
        return ends

    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        pause = 0.01  # the backoff where there are no wake-ups (local_wake.py)
        try:
            conn = self._connection()
            waker, woken = self._waker, False
            while True:
                waker.drain()  # before reading: a wake-up from now on is for what comes next
                batch = self._fetch(conn, max_messages)
                left = deadline - time.monotonic()
                if batch or left <= 0 or woken:  # woken with nothing to read: a `wakeup`
                    return batch
                woken = waker.wait(left)
                if woken is None:
                    time.sleep(min(pause, left))
                    pause, woken = min(pause * 2, 0.2), False
        except sqlite3.Error as exc:
            raise _bus_error(self.bus.path, exc) from exc

    def _fetch(self, conn: sqlite3.Connection, max_messages: int) -> list[Message]:
        batch: list[Message] = []
        ready = [(slot, end) for slot, end in self._ends(conn).items() if end > self._positions[slot]]
        for i, ((topic, partition), _end) in enumerate(ready):
            # Share what is left fairly among the partitions still to read.
            room = max(1, (max_messages - len(batch)) // (len(ready) - i))
            rows = conn.execute(
                "SELECT offset, key, value, headers, timestamp_ms FROM messages"
                " WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
                (topic, partition, self._positions[(topic, partition)], room),
            ).fetchall()
            for offset, key, value, headers, ts in rows:
                batch.append(Message(topic, partition, offset, key, value, _headers_in(headers), ts))
            if rows:
                self._positions[(topic, partition)] = rows[-1][0] + 1
            if len(batch) >= max_messages:
                break
        return batch

    def commit(self, messages: Sequence[Message], wait: bool = True) -> None:  # always synchronous
        if not messages:
            return
        marks: dict[tuple[str, int], int] = {}
        for m in messages:
            slot = (m.topic, m.partition)
            if m.offset + 1 > marks.get(slot, -1):
                marks[slot] = m.offset + 1
        try:
            conn = self._connection()
            with _immediate(conn):
                conn.executemany(
                    "INSERT INTO group_offsets VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (group_id, topic, partition)"
                    " DO UPDATE SET offset = max(offset, excluded.offset)",
                    [(self.group_id, t, p, o) for (t, p), o in marks.items()],
                )
        except sqlite3.Error as exc:
            raise _bus_error(self.bus.path, exc) from exc

    def lag(self) -> int | None:
        try:
            ends = self._ends(self._connection())
        except sqlite3.Error as exc:
            raise _bus_error(self.bus.path, exc) from exc
        return sum(end - self._positions[slot] for slot, end in ends.items())

    def wakeup(self) -> None:
        waker = self._waker
        if waker is not None:
            waker.poke()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        self._closed = True
