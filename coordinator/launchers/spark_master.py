"""The Spark standalone master's REST submission API: driver status and kill, for cluster mode.

In standalone cluster mode spark-submit returns as soon as the master accepted the driver, so
the driver is watched (and re-attached after a coordinator restart) through the master:
    GET  {rest}/v1/submissions/status/{submission_id}  → {"driverState": "RUNNING", ...}
    POST {rest}/v1/submissions/kill/{submission_id}
The REST server listens on port 6066 by default (`spark.master.rest.enabled=true`). YARN and
Kubernetes need none of this: their spark-submit waits for the application by default.
httpx errors are mapped to LaunchError here, at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from coordinator.errors import LaunchError

RUNNING_STATES = frozenset({"SUBMITTED", "RUNNING", "RELAUNCHING", "UNKNOWN"})
SUCCEEDED_STATES = frozenset({"FINISHED"})
DEFAULT_REST_PORT = 6066


@dataclass(frozen=True)
class DriverStatus:
    state: str
    message: str | None = None
    worker: str | None = None

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def succeeded(self) -> bool:
        return self.state in SUCCEEDED_STATES


def rest_url_for(master: str) -> str | None:
    """spark://host:7077 → http://host:6066; a master already on a non-default port keeps it."""
    if not master.startswith("spark://"):
        return None
    first = master[len("spark://") :].split(",")[0]  # HA masters: ask the first one
    parts = urlsplit("//" + first)
    port = DEFAULT_REST_PORT if parts.port in (None, 7077) else parts.port
    return f"http://{parts.hostname}:{port}"


class StandaloneMaster:
    """A small client of one master's REST server; one short request per call."""

    def __init__(self, rest_url: str, timeout_s: float = 10.0) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str) -> dict[str, object]:
        url = f"{self.rest_url}/v1/submissions/{path}"
        try:
            response = httpx.request(method, url, timeout=self.timeout_s)
            response.raise_for_status()
            body = response.json()
        except httpx.HTTPError as exc:
            raise LaunchError(f"spark master at {self.rest_url} failed {method} {path}: {exc}") from exc
        except ValueError as exc:
            raise LaunchError(f"spark master at {self.rest_url} sent a non-JSON answer to {path}") from exc
        if not isinstance(body, dict):
            raise LaunchError(f"spark master at {self.rest_url} sent an unexpected answer to {path}")
        return body

    def status(self, submission_id: str) -> DriverStatus:
        body = self._call("GET", f"status/{submission_id}")
        if body.get("success") is False and not body.get("driverState"):
            raise LaunchError(f"spark master does not know submission {submission_id}: {body.get('message')}")
        return DriverStatus(
            state=str(body.get("driverState") or "UNKNOWN"),
            message=str(body["message"]) if body.get("message") else None,
            worker=str(body["workerHostPort"]) if body.get("workerHostPort") else None,
        )

    def kill(self, submission_id: str) -> bool:
        """Ask the master to kill the driver; True if it accepted."""
        return bool(self._call("POST", f"kill/{submission_id}").get("success"))
