"""The previous release's stream worker (one `state.json` per job), from the repository's history:
its modules written into a package folder of their own, so its worker runs, or its WindowState is
imported, exactly as that release had them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from coordinator.kinds.stream import REPO_ROOT
from tests.conftest import missing

RELEASE = "bb0e715"  # the last commit of the single-file layout
MODULES = ("streamjob.py", "streamwindows.py")


def legacy_package(into: Path) -> Path:
    """A folder holding `coordinator/` with the previous release's worker modules; on PYTHONPATH
    first, `python -m coordinator.streamjob` runs that release's worker."""
    package = into / "coordinator"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in MODULES:
        shown = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "show", f"{RELEASE}:coordinator/{name}"],
            capture_output=True,
            text=True,
        )
        if shown.returncode != 0:
            missing("the previous release's stream worker", f"git show {RELEASE}: {shown.stderr.strip()}")
        (package / name).write_text(shown.stdout)
    return into


def legacy_windows(into: Path) -> ModuleType:
    """The previous release's coordinator/streamwindows.py, imported under a name of its own."""
    path = legacy_package(into) / "coordinator" / "streamwindows.py"
    spec = importlib.util.spec_from_file_location("legacy_streamwindows", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
