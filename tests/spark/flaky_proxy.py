"""A fault injector in front of the real standalone master's REST server, on 127.0.0.1.

What it adds is the one thing a live master will not do on request: be briefly unreachable and
then answer again about the same driver. Every answer it gives otherwise is the real master's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Faults:
    unavailable: int = 0          # answer this many status requests with 503 before forwarding
    forwarded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(target: str, faults: Faults) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _forward(self, method: str) -> None:
            with faults.lock:
                if method == "GET" and faults.unavailable > 0:
                    faults.unavailable -= 1
                    self.send_error(503)
                    return
                faults.forwarded += 1
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            answer = httpx.request(method, target + self.path, content=body, timeout=10)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def do_GET(self) -> None:
            self._forward("GET")

        def do_POST(self) -> None:
            self._forward("POST")

    return Handler


@contextmanager
def flaky_proxy(target: str) -> Iterator[tuple[str, Faults]]:
    """Yields (http://127.0.0.1:PORT, faults) forwarding to the REST server at `target`."""
    faults = Faults()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(target.rstrip("/"), faults))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()
