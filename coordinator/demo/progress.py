"""The live view of a journey: a rich table of runs by state, redrawn from the state store.

It reads the store, not the engine's memory, so what it shows is what is recorded — the same
thing `coord runs` or a second terminal would see.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from coordinator.demo.summary import RunSummary

STATES = ("waiting", "ready", "running", "succeeded", "failed", "blocked")
STATE_STYLE = {
    "waiting": "dim",
    "ready": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "blocked": "magenta",
}


def runs_table(runs: Sequence[RunSummary], job_order: Sequence[str] = (), title: str | None = None) -> Table:
    """One row per job: how many of its runs are in each state (fits an 80-column terminal)."""
    counts: dict[str, Counter[str]] = {job: Counter() for job in job_order}
    for run in runs:
        counts.setdefault(run.job, Counter())[run.state] += 1
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("job", no_wrap=True)
    for state in STATES:
        table.add_column(state, justify="right", style=STATE_STYLE[state], no_wrap=True)
    for job, counter in counts.items():
        table.add_row(job, *[str(counter[s]) if counter[s] else "·" for s in STATES])
    return table


def running_line(runs: Sequence[RunSummary]) -> str:
    """The runs in progress now, with how long each has been running."""
    now = [f"{r.job}[{r.partition or '-'}] {r.seconds or 0:.0f} s" for r in runs if r.state == "running"]
    return "running: " + ", ".join(now) if now else ""


class LiveProgress(AbstractContextManager["LiveProgress"]):
    """Redraws `runs_table(read_runs())` a few times a second in a background thread.

    `read_runs` is called from that thread; a failing read is shown as a line, not raised, so
    a busy store never interrupts the journey it is watching.
    """

    def __init__(
        self,
        read_runs: Callable[[], Sequence[RunSummary]],
        job_order: Sequence[str],
        console: Console,
        status: Callable[[], str] = lambda: "",
        interval_s: float = 0.5,
    ) -> None:
        self.read_runs, self.job_order, self.console = read_runs, tuple(job_order), console
        self.status, self.interval_s = status, interval_s
        self._stop = threading.Event()
        self._live = Live(console=console, refresh_per_second=4, transient=False)
        self._thread = threading.Thread(target=self._loop, name="demo-progress", daemon=True)

    def render(self) -> Group:
        try:
            runs = self.read_runs()
        except Exception as exc:  # a read racing a write; shown, retried on the next tick
            return Group(Text(f"(progress unavailable: {exc})", style="dim"))
        return Group(
            runs_table(runs, self.job_order, title="runs by state"),
            Text(running_line(runs), style="yellow"),
            Text(self.status(), style="dim"),
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._live.update(self.render())

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        self._live.update(self.render())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._live.update(self.render())
        self._live.__exit__(None, None, None)
