"""Wake-ups for the embedded bus's consumers: a message is read the moment it is committed.

Each consumer owns a FIFO in the folder beside the bus file (`<bus file>.wake/`); a producer,
once its messages are committed to the file, writes one byte into every FIFO there, from any
process on the machine. A wake-up is only a hint: the consumer still reads what the file holds,
so a lost one (a full FIFO, a folder that cannot be written, a system without FIFOs) costs
latency, never a message; without FIFOs the consumer sleeps in a backoff, as it did before.

A FIFO whose reader is gone (its process died) refuses a writer (ENXIO) and is removed by the
first producer that finds it. A consumer creates its FIFO under a dot-name, opens it, then
renames it into place, so a producer never finds one that has no reader yet.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import uuid
from pathlib import Path

log = logging.getLogger("coordinator.bus")


def wake_folder(bus_path: Path) -> Path:
    return bus_path.with_name(bus_path.name + ".wake")


def wake_all(folder: Path) -> None:
    """Wake every consumer of the bus whose folder this is. Never raises: a wake-up is a hint."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nobody reads it any more: its consumer died
                with contextlib.suppress(OSError):
                    os.unlink(path)
            continue
        try:
            os.write(fd, b"\0")
        except OSError:  # full (a wake-up is pending already) or gone: nothing to add
            pass
        finally:
            os.close(fd)


class Waker:
    """One consumer's FIFO. `wait(timeout)` returns True when woken (a producer committed, or
    `poke`), False when `timeout` passed, None at once where there is no FIFO (the caller sleeps
    instead); `drain()` forgets the wake-ups seen so far (call it before reading the file)."""

    def __init__(self, folder: Path) -> None:
        self.path: Path | None = None
        self._fds: list[int] = []
        self._poll: select.poll | None = None
        self._lock = threading.Lock()  # poke (any thread) never writes to a closed descriptor
        try:
            folder.mkdir(exist_ok=True)
            name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            staging = folder / f".{name}"
            os.mkfifo(staging, 0o600)
            try:
                self._fds.append(os.open(staging, os.O_RDONLY | os.O_NONBLOCK))
                # a writer of its own, so that producers closing theirs never leave it hung up
                self._fds.append(os.open(staging, os.O_WRONLY | os.O_NONBLOCK))
                os.rename(staging, folder / name)
            except OSError:
                staging.unlink(missing_ok=True)
                raise
            self.path = folder / name
            self._poll = select.poll()
            self._poll.register(self._fds[0], select.POLLIN)
        except (AttributeError, OSError) as exc:  # no FIFOs here: the consumer polls with a backoff
            log.debug("embedded bus: no wake-ups in %s (%s); polling", folder, exc)
            self.close()

    def drain(self) -> None:
        if not self._fds:
            return
        with contextlib.suppress(OSError):  # BlockingIOError: empty
            while len(os.read(self._fds[0], 4096)) == 4096:
                pass

    def wait(self, timeout: float) -> bool | None:
        if self._poll is None:
            return None
        return timeout > 0 and bool(self._poll.poll(max(1, int(timeout * 1000))))

    def poke(self) -> None:
        """Wake this consumer's own wait, from any thread of its process."""
        with self._lock:
            if self._fds:
                with contextlib.suppress(OSError):  # full: a wake-up is pending already
                    os.write(self._fds[1], b"\0")

    def close(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds, self._poll = [], None
