"""The spawn path alone: a process launcher's start, from the call to the job's first statement.

No bus and no store: `begin_process` as the engine's thread calls it right after the commit
that claimed a run (coordinator/workers.py), then `Starting.handle` as the worker thread does.
The job is `python -S marks.py FILE`, whose first statement appends `time.time()` to FILE.
Each of n rounds (--n, default 200, after 10 untimed, --gap-ms apart as a run's launches are
in a coordinator) measures, from just before the call:
- asked: the call returned, the engine's thread free again (the request is with the spawner);
- handle: the spawner's answer read and the handle built (the pid, the job's start time);
- first_statement: the job's first statement, which includes the interpreter's own start;
and, alternating with the rounds, the wall time of `python -S -c pass` (the floor), so a busy
machine moves both alike. Figures are medians and p90s in ms; the last line one JSON object:
{"asked_p50_ms", "handle_p50_ms", "first_statement_p50_ms", "floor_p50_ms", ...p90s}.

    python bench/spawn.py [--n 200] [--gap-ms 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coordinator.launchers.process import begin_process, wait_process

MARKS = """\
import sys, time
now = time.time()
with open(sys.argv[1], "a") as f:
    f.write(f"{now!r}\\n")
"""


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=10.0)
    args = parser.parse_args()
    warm_up = 10
    times: dict[str, list[float]] = {"asked": [], "handle": [], "first_statement": [], "floor": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "marks.py").write_text(MARKS)
        for i in range(warm_up + args.n):
            marks = tmp / f"marks-{i}.txt"
            argv = [sys.executable, "-S", str(tmp / "marks.py"), str(marks)]
            t0 = time.time()
            starting = begin_process("command", argv, tmp / "runs" / f"r{i}" / "attempt-1")
            asked = time.time()
            handle = starting.handle()
            built = time.time()
            result = wait_process(handle, 30.0)
            assert result.succeeded, result.error
            first = float(marks.read_text())
            t1 = time.perf_counter()
            subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)
            floor = time.perf_counter() - t1
            if i >= warm_up:
                for name, value in (("asked", asked), ("handle", built), ("first_statement", first)):
                    times[name].append((value - t0) * 1000)
                times["floor"].append(floor * 1000)
            time.sleep(args.gap_ms / 1000)
    figures: dict[str, float] = {}
    for name, values in times.items():
        figures[f"{name}_p50_ms"] = round(statistics.median(values), 3)
        figures[f"{name}_p90_ms"] = p90(values)
        print(f"  {name}: p50 {figures[f'{name}_p50_ms']} ms, p90 {figures[f'{name}_p90_ms']} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
