"""An event-driven coordinator for data pipelines.

`coordinator.publish(dataset, partition, ...)` is the producers' SDK call (see
coordinator/publish.py); it is imported on first use so `import coordinator` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "publish":
        return importlib.import_module("coordinator.publish")
    raise AttributeError(f"module 'coordinator' has no attribute {name!r}")
