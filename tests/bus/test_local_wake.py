"""The embedded bus wakes a waiting consumer when a producer commits, from another process too."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import threading
import time
from pathlib import Path

from coordinator.bus.local import LocalBus
from coordinator.bus.local_wake import Waker, wake_all


def _produce_later(path: str, delay_s: float, out: str) -> None:
    """In another process: after `delay_s`, commit one message; when it was durable, to `out`."""
    time.sleep(delay_s)
    producer = LocalBus(path).producer()
    producer.produce("wake", b"x")
    producer.flush()
    Path(out).write_text(repr(time.monotonic()))
    producer.close()


def test_a_waiting_consumer_reads_a_message_from_another_process_as_it_is_committed(tmp_path: Path) -> None:
    bus = LocalBus(tmp_path / "bus.db")
    consumer = bus.consumer("g", ["wake"])
    assert consumer.poll(10, timeout=0.01) == []  # connected, its FIFO in place
    ctx = mp.get_context("spawn")
    delays = []
    for i in range(5):
        out = tmp_path / f"sent-{i}"
        # a second into the wait, when a sleeping backoff would look only every 200 ms
        proc = ctx.Process(target=_produce_later, args=(str(bus.path), 1.0, str(out)))
        proc.start()
        got = consumer.poll(10, timeout=30)
        read_at = time.monotonic()
        proc.join(30)
        assert [m.value for m in got] == [b"x"]
        consumer.commit(got)
        delays.append(read_at - float(out.read_text()))
    assert statistics.median(delays) < 0.05, delays
    consumer.close()
    assert os.listdir(bus.wake_folder) == []  # a closed consumer takes its FIFO away


def test_a_dead_consumers_fifo_is_removed_and_a_full_one_never_blocks(tmp_path: Path) -> None:
    folder = tmp_path / "bus.db.wake"
    live, dead = Waker(folder), Waker(folder)
    assert live.path is not None and dead.path is not None
    dead_path = dead.path
    for fd in dead._fds:  # its process died: no reader, no writer, the name left behind
        os.close(fd)
    dead._fds, dead.path = [], None
    for _ in range(100_000 // 4096 + 20):  # more wake-ups than a pipe holds
        wake_all(folder)
    assert not dead_path.exists() and live.path.exists()
    started = time.monotonic()
    assert live.wait(5.0) and time.monotonic() - started < 1.0  # pending: returns at once
    live.drain()
    started = time.monotonic()
    assert live.wait(0.2) is False and time.monotonic() - started >= 0.15  # drained: nothing pending
    live.close()


def test_without_fifos_the_consumer_falls_back_to_sleeping(tmp_path: Path) -> None:
    waker = Waker(tmp_path / "missing" / "deeper")  # the folder cannot be made: no FIFO
    assert waker.path is None
    assert waker.wait(0.5) is None
    wake_all(tmp_path / "missing" / "deeper")  # never raises


def test_wakeup_from_another_thread_ends_a_waiting_poll_at_once(tmp_path: Path) -> None:
    consumer = LocalBus(tmp_path / "bus.db").consumer("g", ["wake"])
    assert consumer.poll(10, timeout=0.01) == []
    threading.Timer(0.3, consumer.wakeup).start()  # e.g. a job ended: the loop has work
    started = time.monotonic()
    assert consumer.poll(10, timeout=10.0) == []
    assert 0.25 < time.monotonic() - started < 2.0  # woken, not timed out
    consumer.close()
    consumer.wakeup()  # after close: nothing to wake, never raises
