"""Which launcher serves which job kind (the list is coordinator/kinds' KINDS). Imported
lazily so a kind's heavy imports (pyspark, mlflow) are paid only when a spec uses it."""

from __future__ import annotations

from coordinator.kinds import KINDS, imported, kind
from coordinator.launchers.base import Launcher
from coordinator.settings import Settings

__all__ = ["KINDS", "build_launcher", "launcher_class"]


def launcher_class(name: str) -> type[Launcher]:
    return imported(kind(name).launcher)


def build_launcher(kind: str, settings: Settings) -> Launcher:
    return launcher_class(kind)(settings)
