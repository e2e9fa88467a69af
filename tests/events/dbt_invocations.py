"""Real dbt invocations in one child process, in order, each one's target/ kept as it left it:
`python dbt_invocations.py REQUEST` with REQUEST a JSON list of [project folder, name, [dbt
arguments]] (profiles.yml in the folder; target/ copied to FOLDER/kept/NAME); prints a JSON list
of what each invocation gave on its last line.

dbt-core's programmatic runner (as coordinator/dbtjob.py runs it) instead of one `dbt` process an
invocation: dbt's import is most of a small project's invocation (~2 s of each ~4 s), and the
artifacts an invocation writes are the same either way. Each invocation gets a fresh runner (no
manifest handed on) and its command line in sys.argv, as separate `dbt` commands would. A child,
not the test process, so dbt's global flags and loggers stay out of the tests.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from contextlib import redirect_stdout
from pathlib import Path


def exit_code(done: object) -> int:
    """The `dbt` command's exit code for a runner result: 0 success, 1 a failure in the
    invocation (a node or a test), 2 dbt could not run it."""
    if getattr(done, "exception", None) is not None:
        return 2
    return 0 if getattr(done, "success", False) else 1


def main(request: list[tuple[str, str, list[str]]]) -> None:
    from dbt.cli.main import dbtRunner

    results = []
    for folder, name, args in request:
        root = Path(folder)
        os.chdir(root)  # where a `dbt` command would run
        common = ["--profiles-dir", str(root), "--project-dir", str(root), "--no-use-colors",
                  "--no-send-anonymous-usage-stats"]
        out = io.StringIO()
        sys.argv = ["dbt", *args, *common]  # dbt writes its invocation_command from sys.argv
        with redirect_stdout(out):
            done = dbtRunner().invoke(sys.argv[1:])
        shutil.copytree(root / "target", root / "kept" / name)
        results.append({"returncode": exit_code(done), "stdout": out.getvalue(),
                        "exception": repr(done.exception) if done.exception else None})
    print(json.dumps(results))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
