"""Reading a Spark driver log: the application id, the submission id and the real error line.

A failed PySpark driver log ends with hundreds of shutdown lines after the traceback, and the
traceback itself often wraps the cause: a `Py4JJavaError` whose cause is the Java exception
after it, or a `PythonException` that embeds the Python worker's own traceback. The generic
"last line that looks like an error" rule then picks a shutdown or py4j line; these rules pick
the line a person would point at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

APP_ID = re.compile(r"\b(application_\d+_\d+|app-\d{14}-\d{4,}|local-\d{10,})\b")
SUBMISSION_ID = re.compile(r"\b(driver-\d{14}-\d{4,})\b")
LOG4J_ERROR = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (?:ERROR|FATAL) (?P<msg>.*)$")
ARGPARSE_ERROR = re.compile(r"^\S+: error: .+")
PY_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure)?(?::.*)?$")
JAVA_CAUSE = re.compile(r"^(?:Caused by: |: )(?P<exc>[\w.$]+(?:Exception|Error|Throwable)\b.*)$")
# Lines that say "something failed" without saying what: never the answer when a better one exists.
GENERIC = (
    "py4j.protocol.Py4JError",
    "Py4JNetworkError",
    "Answer from Java side is empty",
    "Error while receiving",
    "Error while sending",
    "Closing down clientserver connection",
    "Assume no metadata directory",
)
MAX_LINE = 2000


def read_tail(path: Path, limit_bytes: int = 256_000) -> str:
    """The last `limit_bytes` of a log (the cause is near the end; logs can be large)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def application_id(text: str) -> str | None:
    """The Spark application id (local-…, app-…, application_…) mentioned in a driver log."""
    m = APP_ID.search(text)
    return m.group(1) if m else None


def submission_id(text: str) -> str | None:
    """The standalone cluster submission id (driver-…) printed by spark-submit in cluster mode."""
    found = SUBMISSION_ID.findall(text)
    return found[-1] if found else None


def _java_cause(lines: list[str], start: int) -> str | None:
    """After a Py4JJavaError line: the deepest `Caused by:` of the Java trace, else its first line."""
    first = deepest = None
    for line in lines[start + 1 :]:
        if line.startswith(("\tat ", "\t... ", "    at ")):
            continue
        m = JAVA_CAUSE.match(line)
        if m:
            if line.startswith(": "):
                first = first or m["exc"]
            else:
                deepest = m["exc"]
        elif line.strip() and not line.startswith((" ", "\t")) and first:
            break  # the Java trace ended
    return deepest or first


def _python_exception(lines: list[str]) -> str | None:
    """The exception line of the last Python traceback in the log (the innermost, if nested)."""
    starts = [i for i, ln in enumerate(lines) if ln.strip() == "Traceback (most recent call last):"]
    if not starts:
        return None
    for i in range(starts[-1] + 1, len(lines)):
        line = lines[i]
        if not line.strip() or line.startswith((" ", "\t")):
            continue  # frames and source lines are indented
        if not PY_EXCEPTION.match(line):
            continue
        if "Py4JJavaError" in line:
            return _java_cause(lines, i) or line.strip()
        if line.rstrip().endswith(":") and i + 1 < len(lines) and lines[i + 1].strip():
            # `PythonException: \n  An exception was thrown…`: the message continues below
            return f"{line.strip()} {lines[i + 1].strip()}"
        return line.strip()
    return None


def error_line(text: str) -> str | None:
    """The line that best explains a failed Spark application, or None if nothing fits."""
    lines = text.splitlines()
    found = _python_exception(lines)
    if found and not any(g in found for g in GENERIC):
        return found[:MAX_LINE]
    oom = next((ln.strip() for ln in reversed(lines) if "java.lang.OutOfMemoryError" in ln), None)
    if oom:
        return oom[:MAX_LINE]
    for line in reversed(lines):
        if ARGPARSE_ERROR.match(line) or line.startswith(("Exception in thread", "Error: ")):
            return line.strip()[:MAX_LINE]
        m = LOG4J_ERROR.match(line)
        if m and not any(g in line for g in GENERIC):
            return m["msg"].strip()[:MAX_LINE]
    return found[:MAX_LINE] if found else None
