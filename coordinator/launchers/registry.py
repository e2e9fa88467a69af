"""Which launcher serves which job kind. Imported lazily so a kind's heavy imports (pyspark,
mlflow) are paid only when a spec uses it."""

from __future__ import annotations

import importlib

from coordinator.launchers.base import Launcher
from coordinator.settings import Settings

KINDS: dict[str, str] = {
    "command": "coordinator.launchers.command:CommandLauncher",
    "spark": "coordinator.launchers.spark:SparkLauncher",
    "score": "coordinator.launchers.score:ScoreLauncher",
    "reverse_etl": "coordinator.launchers.reverse_etl:ReverseEtlLauncher",
}


def launcher_class(kind: str) -> type[Launcher]:
    try:
        module_name, class_name = KINDS[kind].split(":")
    except KeyError:
        raise KeyError(f"unknown job kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}") from None
    return getattr(importlib.import_module(module_name), class_name)


def build_launcher(kind: str, settings: Settings) -> Launcher:
    return launcher_class(kind)(settings)
