"""Event to a `command` job's first statement, beside the interpreter's own start (the floor).

The coordinator serves as `coord serve` does (coordinator/service.py with its HTTP side) in a
process of its own; this process plays the producer and the job's witness. Each job is
`python -S marks.py FILE WHAT`, a script whose first statement appends `time.time()` to FILE,
so what is measured ends where the job's own code begins:
- single: just before an HTTP POST of a completion event (a kept-alive connection) → the first
  statement of the one job that consumes it;
- and: a job of two inputs; the first input's event is posted, then the clock starts just
  before the POST of the second, the one that makes the run ready;
- hop: a chain first → second; the time from the last statement of `first` (its end, the
  process exiting) to the first statement of `second` — the job's end seen, its output recorded,
  the downstream run claimed and started;
- floor: the median wall time of `python -S -c pass`, measured in the same run between the
  backends' rounds, so a busy machine moves both alike; each is followed by the same under the
  `/bin/sh` wrapper that kept exit codes before the process spawner (launchers/spawner.py) and
  still does where it cannot run; its cost is the difference of the medians (`shell_wrapper_ms`).

Backends as in bench/latency.py: kafka_postgres (the broker and PostgreSQL of scripts/services,
a fresh topic and database) and local (the embedded bus and SQLite). Each measure is taken n
times (--n, default 20) after --warm-up untimed ones; the figures are medians (the machine is
shared, so p90s are printed too, not judged).

    eval "$(scripts/services env)"; python bench/launch.py [--n 20] [--only local]
Prints figures as it goes and, as its last line, one JSON object:
{"floor_ms", "shell_wrapper_ms", "local": {"single_p50_ms", "and_p50_ms", "hop_p50_ms"},
"kafka_postgres": {...}}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from latency import Backend, backend_names
from pydantic import SecretStr

from coordinator.settings import Settings
from coordinator.spec.models import DatasetSpec, JobSpec, PipelineSpec

TOKEN = "bench-launch-token"
DAY0 = date(2024, 1, 1)
MARKS = """\
import sys, time
now = time.time()
with open(sys.argv[1], "a") as f:
    f.write(f"{sys.argv[2]} {now!r}\\n")
"""


def job(inputs: list[str], outputs: list[str], marks: Path, what: str, script: Path) -> JobSpec:
    argv = [sys.executable, "-S", str(script), str(marks), what]
    return JobSpec(kind="command", inputs=inputs, outputs=outputs, settings={"command": argv})


def build_spec(tmp: Path, marks: Path) -> PipelineSpec:
    """single: in.single; and: in.left AND in.right; hop: in.chain → first → mid.chain → second.
    `first` marks its end (the script's last statement runs again as `first-end`)."""
    (tmp / "marks.py").write_text(MARKS)
    (tmp / "first.py").write_text(
        MARKS + 'now = time.time()\nwith open(sys.argv[1], "a") as f:\n    f.write(f"first-end {now!r}\\n")\n'
    )
    names = ("in.single", "in.left", "in.right", "in.chain", "mid.chain")
    return PipelineSpec(
        datasets={n: DatasetSpec(partitioning="daily") for n in names},
        jobs={
            "single": job(["in.single"], ["out.single"], marks, "single", tmp / "marks.py"),
            "both": job(["in.left", "in.right"], ["out.both"], marks, "both", tmp / "marks.py"),
            "first": job(["in.chain"], ["mid.chain"], marks, "first", tmp / "first.py"),
            "second": job(["mid.chain"], ["out.chain"], marks, "second", tmp / "marks.py"),
        },
        pools={"default": 16},
    ).checked()


def _serve(settings: Settings, spec: PipelineSpec, port: int, stop) -> None:
    """In a process of its own: the coordinator as `coord serve` runs it, until `stop` is set."""
    from coordinator.service import Service

    settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    with Service(spec, settings, http=("127.0.0.1", port), freeze_gc=True, log_runs=False) as service:
        service.run(stop=stop.is_set)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Marks:
    """The lines the jobs append: (what, time) in order."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, 0

    def wait(self, what: str, timeout_s: float = 30.0) -> dict[str, float]:
        """Block until a new line `what ...` appears; every new line since the last call."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = self.path.read_text().splitlines() if self.path.exists() else []
            new = dict(line.split(" ", 1) for line in lines[self.seen :])
            if what in new:
                self.seen = len(lines)
                return {k: float(v) for k, v in new.items()}
            time.sleep(0.005)  # the mark holds its own time: looking often would only take CPU
        raise RuntimeError(f"no {what!r} mark within {timeout_s} s")


class Poster:
    """POST /events over one kept-alive connection, as a producer that posts often would."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def post(self, dataset: str, partition: str) -> None:
        body = json.dumps({"dataset": dataset, "partition": partition, "producer": "bench"})
        self.conn.request("POST", "/events", body, self.headers)
        response = self.conn.getresponse()
        text = response.read()
        if response.status != 202:
            raise RuntimeError(f"POST /events: {response.status} {text!r}")

    def ready(self, server: mp.process.BaseProcess, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and server.is_alive():
            try:
                self.conn.request("GET", "/readyz")
                response = self.conn.getresponse()
                response.read()
                if response.status == 200:
                    return
            except OSError:
                self.conn.close()
            time.sleep(0.2)
        raise RuntimeError("the coordinator did not become ready")


def measure(
    settings: Settings, spec: PipelineSpec, marks: Marks, n: int, warm_up: int
) -> dict[str, list[float]]:
    """n timed rounds of each measure (after `warm_up` untimed ones), in ms."""
    port = free_port()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(target=_serve, args=(settings, spec, port, stop))
    proc.start()
    out: dict[str, list[float]] = {"single": [], "and": [], "hop": []}
    try:
        poster = Poster(port)
        poster.ready(proc)
        for i in range(warm_up + n):
            day = (DAY0 + timedelta(days=i)).isoformat()
            t0 = time.time()
            poster.post("in.single", day)
            single = marks.wait("single")["single"] - t0
            poster.post("in.left", day)
            time.sleep(0.05)  # the left input is recorded: the right one alone makes the run ready
            t0 = time.time()
            poster.post("in.right", day)
            both = marks.wait("both")["both"] - t0
            poster.post("in.chain", day)
            seen = marks.wait("first-end")
            seen.update(marks.wait("second"))
            hop = seen["second"] - seen["first-end"]
            if i >= warm_up:
                for name, value in (("single", single), ("and", both), ("hop", hop)):
                    out[name].append(value * 1000)
            time.sleep(0.05)  # the chain's end recorded before the next round starts
    finally:
        stop.set()
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    return out


def floor_ms(n: int, wrapped: list[float] | None = None, exit_file: Path | None = None) -> list[float]:
    """n wall times of `python -S -c pass`; given `wrapped`, each is followed by one of the same
    under the launcher's fallback `/bin/sh` wrapper (launchers/process.py), appended there."""
    times = []
    argv = [sys.executable, "-S", "-c", "pass"]
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append((time.perf_counter() - t0) * 1000)
        if wrapped is not None and exit_file is not None:
            script = f"{shlex.join(argv)}; echo $? > {shlex.quote(str(exit_file))}"
            t0 = time.perf_counter()
            subprocess.run(["/bin/sh", "-c", script], check=True)
            wrapped.append((time.perf_counter() - t0) * 1000)
    return times


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20, help="timed rounds per backend (each: single, and, hop)")
    parser.add_argument("--warm-up", type=int, default=3)
    parser.add_argument("--only", choices=["kafka_postgres", "local"])
    args = parser.parse_args()
    result: dict[str, object] = {}
    wrapped: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        floors: list[float] = floor_ms(args.n, wrapped, tmp / "exit_code")
        only = {"local": "local_sqlite", "kafka_postgres": "kafka_postgres", None: None}[args.only]
        for name in backend_names(only):
            key = "local" if name == "local_sqlite" else name
            marks = Marks(tmp / f"marks-{key}.txt")
            spec = build_spec(tmp, marks.path)
            settings = Backend(name, tmp).fresh().model_copy(update={"batch_max_events": 500})
            times = measure(settings, spec, marks, args.n, args.warm_up)
            floors += floor_ms(args.n, wrapped, tmp / "exit_code")
            figures = {f"{m}_p50_ms": round(statistics.median(v), 1) for m, v in times.items()}
            figures.update({f"{m}_p90_ms": p(v, 0.9) for m, v in times.items()})
            print(f"  {key}: {figures}", flush=True)
            result[key] = figures
    floor = round(statistics.median(floors), 1)
    shell = round(statistics.median(wrapped) - statistics.median(floors), 2)
    print(f"  floor, `python -S -c pass`: {floor} ms (median of {len(floors)}, p90 {p(floors, 0.9)} ms)")
    print(f"  the /bin/sh wrapper around it adds {shell} ms (medians of {len(wrapped)}, alternating)")
    print(json.dumps({"floor_ms": floor, "shell_wrapper_ms": shell, **result}))


if __name__ == "__main__":
    main()
