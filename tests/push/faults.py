"""Real faults for the push's error path: a private PostgreSQL server a test may stop, and a TCP
proxy that loses the answer to COMMIT.

`PrivatePostgres` runs Debian's initdb/pg_ctl into a temporary folder on a free 127.0.0.1 port
(as the `postgres` user when the tests run as root, as scripts/services does), so a test can
stop it with `pg_ctl stop -m immediate` — the server dies as in a crash — without touching the
shared server other tests use.

`CommitAckLost` sits between the push and a real server and forwards every byte both ways,
until the client sends COMMIT: it forwards the COMMIT, waits until the server answers (so the
server has committed), then closes both sides without passing the answer on. The push sees a
connection lost at COMMIT, exactly as when a network path fails between the server's commit and
its acknowledgement. Nothing in the product is patched: the push is pointed at the proxy's port.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

# the simple-query message of `COMMIT` (PostgreSQL: 'Q', int32 length, text, NUL) and PyMySQL's
# COM_QUERY packet body (MySQL: 0x03 then the text); each driver sends its COMMIT this way
COMMIT_MESSAGES = (b"Q\x00\x00\x00\x0bCOMMIT\x00", b"\x03COMMIT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return str(Path(found[-1]).parent) if found else None


class PrivatePostgres:
    """A throw-away PostgreSQL server: `start()`, `stop_now()` (immediate, like a crash), `close()`."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        if self.bin is None:
            raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.dir = Path(tempfile.mkdtemp(prefix="coord-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, f"{self.bin}/{tool}", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        log = str(self.dir / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "start", "-o", options)

    def stop_now(self) -> None:
        """Stop the server as a crash would: no checkpoint, every backend killed."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):  # stopped already
                self.stop_now()
        shutil.rmtree(self.dir, ignore_errors=True)


class CommitAckLost:
    """A TCP proxy on 127.0.0.1 that loses the server's answer to the first COMMIT it forwards
    once armed (`arm()`: a push's reads commit too, and their answers must pass).

    `committed` is set once COMMIT reached the server and the server answered it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.committed = threading.Event()
        self._armed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            pair = _Pair(client, server)
            threading.Thread(target=self._upstream, args=(pair,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(pair,), daemon=True).start()

    def _upstream(self, pair: _Pair) -> None:
        while data := _recv(pair.client):
            with self._lock:
                hit = self._armed and any(m in data for m in COMMIT_MESSAGES)
                if hit:
                    self._armed = False
            if hit:
                pair.drop_answer.set()
            try:
                pair.server.sendall(data)
            except OSError:
                break
        pair.close()

    def _downstream(self, pair: _Pair) -> None:
        while data := _recv(pair.server):
            if pair.drop_answer.is_set():  # the server answered COMMIT: the answer goes nowhere
                self.committed.set()
                break
            try:
                pair.client.sendall(data)
            except OSError:
                break
        pair.close()

    def arm(self) -> None:
        with self._lock:
            self._armed = True

    def close(self) -> None:
        self.listener.close()


class _Pair:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self.drop_answer = threading.Event()

    def close(self) -> None:
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(65536)
    except OSError:
        return b""
