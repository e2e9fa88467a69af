"""The run-folder layout, in one place: where an attempt's files live under the coordinator's home.

    <home>/runs/<run_id>/attempt-<n>/
        log            the attempt's stdout and stderr
        exit_code      the job's exit code, written by its parent (launchers/spawner.py, or the
                       /bin/sh wrapper where there is no spawner) when it exits
        exit_code.signal  instead, the signal that killed it (the spawner's)
        result.jsonl   what the job reported (outputs, details): see launchers/result.py

The engine names the folder, the process spawner makes it as it starts the job (the launcher
does under the wrapper), the job writes into it, recovery reads it after a restart,
and the views (history, the UI) find an attempt's log there when the launcher reported none.
"""

from __future__ import annotations

from pathlib import Path

RUNS_DIR = "runs"
LOG_NAME, EXIT_NAME, RESULT_NAME = "log", "exit_code", "result.jsonl"
SIGNAL_SUFFIX = ".signal"  # beside exit_code: the spawner's record of a job killed by a signal
STALE_NAMES = (EXIT_NAME, EXIT_NAME + SIGNAL_SUFFIX, RESULT_NAME)  # what a start again clears


def runs_root(home: str | Path) -> Path:
    """The folder that holds every run's folders."""
    return Path(home) / RUNS_DIR


def attempt_dir(runs: Path, run_id: str, attempt: int) -> Path:
    """One attempt's folder under `runs` (see `runs_root`)."""
    return runs / run_id / f"attempt-{attempt}"


def attempt_log(home: str | Path, run_id: str, attempt: int) -> Path:
    """The log file of one attempt, by the layout."""
    return attempt_dir(runs_root(home), run_id, attempt) / LOG_NAME
