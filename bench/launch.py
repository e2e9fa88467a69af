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
  The floor is also sampled once at the end of every round, while the coordinator serves
  (`floor_in_rounds_ms`, per backend and build): the jobs of a round start on the machine as it
  is then, with the coordinator's threads awake, and the floor beside them is the fair measure
  of what the coordinator adds (`single_over_floor_ms`, ...: a median minus that floor's).

Backends as in bench/latency.py: kafka_postgres (the broker and PostgreSQL of scripts/services,
a fresh topic and database) and local (the embedded bus and SQLite). Each measure is taken n
times (--n, default 20) after --warm-up untimed ones; the figures are medians (the machine is
shared, so p90s are printed too, not judged).

`--baseline DIR` (a directory holding another build's `coordinator` package, e.g. a `git
worktree` of an earlier commit) serves that build too, beside this one, each on a topic and
store of its own, and takes their rounds in turn (the order swapped every round): on a shared
machine whose speed drifts from minute to minute, rounds taken seconds apart see the same
machine, where runs taken one after the other did not. Its figures are under "baseline", and
"gain_ms" is the baseline's median minus this build's, per measure.

    eval "$(scripts/services env)"; python bench/launch.py [--n 20] [--only local] [--baseline DIR]
Prints figures as it goes and, as its last line, one JSON object:
{"floor_ms", "shell_wrapper_ms", "local": {"single_p50_ms", "and_p50_ms", "hop_p50_ms",
"floor_in_rounds_ms", "single_over_floor_ms", ...}, "kafka_postgres": {...}} (and with
--baseline: "baseline": {the same}, "gain_ms": {...}).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
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
ROOT = Path(__file__).resolve().parent.parent  # this build: the coordinator package beside bench/
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


def _serve_child(setup: Path) -> None:
    """`--serve SETUP`, in a process of its own: the coordinator as `coord serve` runs it (of the
    build first on PYTHONPATH), with the settings, spec and port in SETUP, until stdin closes."""
    import threading

    import coordinator
    from coordinator.service import Service

    given = json.loads(setup.read_text())
    # an earlier build (--baseline) knows fewer settings: the ones it lacks are left at this
    # build's defaults by the caller, so leaving them out asks of it nothing it cannot do
    known = {k: v for k, v in given["settings"].items() if k in Settings.model_fields}
    settings = Settings(**known).model_copy(update={"api_token": SecretStr(TOKEN)})
    spec = PipelineSpec.model_validate(given["spec"]).checked()
    print(f"serving {Path(coordinator.__file__).resolve().parent.parent}", flush=True)
    stopped = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stopped.set()), daemon=True).start()
    with Service(
        spec, settings, http=("127.0.0.1", given["port"]), freeze_gc=True, log_runs=False
    ) as service:
        service.run(stop=stopped.is_set)


def _plain(value):
    """Settings as JSON, their secrets included (they are the bench's own: a fresh store's URL)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


class Served:
    """A coordinator serving in a child interpreter, of the build at `code` (its `coordinator`
    package first on the child's path), on a port of its own, with its own marks file."""

    def __init__(self, code: Path, settings: Settings, spec: PipelineSpec, marks: Marks, tmp: Path) -> None:
        self.code, self.marks, self.port = code.resolve(), marks, free_port()
        setup = tmp / f"serve-{self.port}.json"
        given = {
            "settings": _plain(settings.model_dump()),
            "spec": spec.model_dump(mode="json"),
            "port": self.port,
        }
        setup.write_text(json.dumps(given))
        env = {**os.environ, "PYTHONPATH": str(self.code)}
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve", str(setup)]
        self.proc = subprocess.Popen(
            argv, env=env, cwd=self.code, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        served = (self.proc.stdout.readline() if self.proc.stdout else "").strip()
        if served != f"serving {self.code}":
            self.stop()
            raise RuntimeError(f"the coordinator of {self.code} did not start (it said {served!r})")
        self.poster = Poster(self.port)
        self.poster.ready(self.proc)

    def round(self, day: str) -> tuple[float, float, float, float]:
        """One round of the three measures and, last, one sample of the floor taken while this
        coordinator serves (its threads awake as a job's start finds them), in ms."""
        poster, marks = self.poster, self.marks
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
        time.sleep(0.05)  # the chain's end recorded before the next round starts
        floor = floor_ms(1)[0]
        return single * 1000, both * 1000, hop * 1000, floor

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


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

    def ready(self, server: subprocess.Popen, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and server.poll() is None:
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


def measure(served: list[Served], n: int, warm_up: int) -> list[dict[str, list[float]]]:
    """n timed rounds of each measure (after `warm_up` untimed ones) of each served build, in
    ms; with two, their rounds in turn, the first of each pair swapped every round."""
    out: list[dict[str, list[float]]] = [{"single": [], "and": [], "hop": [], "floor": []} for _ in served]
    for i in range(warm_up + n):
        day = (DAY0 + timedelta(days=i)).isoformat()
        order = list(range(len(served)))
        for k in order if i % 2 == 0 else reversed(order):
            single, both, hop, floor = served[k].round(day)
            if i >= warm_up:
                for name, value in (("single", single), ("and", both), ("hop", hop), ("floor", floor)):
                    out[k][name].append(value)
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
    parser.add_argument("--baseline", type=Path, help="a directory holding another build's coordinator/")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve_child(args.serve)
        return
    builds = [ROOT] + ([args.baseline] if args.baseline else [])
    result: dict[str, dict[str, object]] = {"current": {}, "baseline": {}}
    wrapped: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        floors: list[float] = floor_ms(args.n, wrapped, tmp / "exit_code")
        only = {"local": "local_sqlite", "kafka_postgres": "kafka_postgres", None: None}[args.only]
        for name in backend_names(only):
            key = "local" if name == "local_sqlite" else name
            served: list[Served] = []
            try:
                for b, code in enumerate(builds):
                    marks = Marks(tmp / f"marks-{key}-{b}.txt")
                    spec = build_spec(tmp, marks.path)
                    settings = Backend(name, tmp).fresh().model_copy(update={"batch_max_events": 500})
                    served.append(Served(code, settings, spec, marks, tmp))
                times = measure(served, args.n, args.warm_up)
            finally:
                for s in served:
                    s.stop()
            floors += floor_ms(args.n, wrapped, tmp / "exit_code")
            for which, got in zip(("current", "baseline"), times, strict=False):
                in_rounds = got.pop("floor")
                figures = {f"{m}_p50_ms": round(statistics.median(v), 1) for m, v in got.items()}
                figures.update({f"{m}_p90_ms": p(v, 0.9) for m, v in got.items()})
                # the floor beside each round, as the jobs of that round found the machine
                figures["floor_in_rounds_ms"] = round(statistics.median(in_rounds), 1)
                figures.update(
                    {
                        f"{m}_over_floor_ms": round(statistics.median(v) - statistics.median(in_rounds), 1)
                        for m, v in got.items()
                    }
                )
                print(f"  {key}{'' if which == 'current' else ' (baseline)'}: {figures}", flush=True)
                result[which][key] = figures
    floor = round(statistics.median(floors), 1)
    shell = round(statistics.median(wrapped) - statistics.median(floors), 2)
    print(f"  floor, `python -S -c pass`: {floor} ms (median of {len(floors)}, p90 {p(floors, 0.9)} ms)")
    print(f"  the /bin/sh wrapper around it adds {shell} ms (medians of {len(wrapped)}, alternating)")
    out: dict[str, object] = {"floor_ms": floor, "shell_wrapper_ms": shell, **result["current"]}
    if args.baseline:
        out["baseline"] = result["baseline"]
        out["gain_ms"] = {
            key: {
                m: round(result["baseline"][key][f"{m}_p50_ms"] - figures[f"{m}_p50_ms"], 1)  # type: ignore[index]
                for m in ("single", "and", "hop")
            }
            for key, figures in result["current"].items()
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
