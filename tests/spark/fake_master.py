"""A stand-in for a Spark standalone master's REST submission server, on 127.0.0.1.

Only the master is stood in for (no cluster runs here): it accepts submissions the way the real
server does and answers status with a scripted sequence of driver states, recording kills.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class MasterState:
    states: dict[str, list[str]] = field(default_factory=dict)   # submission id → states still to answer
    created: list[dict] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    status_calls: int = 0
    unavailable: int = 0                   # answer this many status calls with 503 first
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_state(self, sid: str) -> str | None:
        with self.lock:
            self.status_calls += 1
            script = self.states.get(sid)
            if not script:
                return None
            return script.pop(0) if len(script) > 1 else script[0]


def _handler(state: MasterState, new_states: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with state.lock:
                if state.unavailable > 0:
                    state.unavailable -= 1
                    self.send_error(503)
                    return
            sid = self.path.rsplit("/", 1)[-1]
            driver_state = state.next_state(sid)
            if driver_state is None:
                self._send({"action": "SubmissionStatusResponse", "success": False, "submissionId": sid,
                            "message": f"Driver {sid} not found.", "serverSparkVersion": "4.0.1"})
                return
            body = {"action": "SubmissionStatusResponse", "driverState": driver_state, "success": True,
                    "submissionId": sid, "serverSparkVersion": "4.0.1", "workerHostPort": "127.0.0.1:7078",
                    "workerId": "worker-20260310000000-127.0.0.1-7078"}
            if driver_state == "FAILED":
                body["message"] = "Exception from the cluster: java.lang.IllegalStateException: boom"
            self._send(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            if self.path.endswith("/create"):
                with state.lock:
                    sid = f"driver-20260310000000-{len(state.created):04d}"
                    state.created.append(payload)
                    state.states[sid] = list(new_states)
                self._send({"action": "CreateSubmissionResponse", "success": True, "submissionId": sid,
                            "message": f"Driver successfully submitted as {sid}",
                            "serverSparkVersion": "4.0.1"})
            elif "/kill/" in self.path:
                sid = self.path.rsplit("/", 1)[-1]
                with state.lock:
                    state.kills.append(sid)
                    state.states[sid] = ["KILLED"]
                self._send({"action": "KillSubmissionResponse", "success": True, "submissionId": sid,
                            "message": f"Kill request for {sid} submitted", "serverSparkVersion": "4.0.1"})
            else:
                self.send_error(404)

    return Handler


@contextmanager
def fake_master(new_states: list[str] | None = None) -> Iterator[tuple[str, MasterState]]:
    """Yields (http://127.0.0.1:PORT, state); submissions created through it get `new_states`."""
    state = MasterState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, new_states or ["RUNNING", "FINISHED"]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
