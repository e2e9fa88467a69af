"""The previous release's stream worker (one `state.json` per job): its modules as that release
shipped them (kept in tests/stream/previous_release/ as text, so a shallow clone has them too),
written into a package folder of their own, so its worker runs, or its WindowState is imported,
exactly as that release had them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RELEASE = Path(__file__).with_name("previous_release")  # commit bb0e715's, the single-file layout
MODULES = ("streamjob.py", "streamwindows.py")


def legacy_package(into: Path) -> Path:
    """A folder holding `coordinator/` with the previous release's worker modules; on PYTHONPATH
    first, `python -m coordinator.streamjob` runs that release's worker."""
    package = into / "coordinator"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in MODULES:
        (package / name).write_text((RELEASE / f"{name}.txt").read_text())
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
