"""`coord demo`: the "website scores" journey end to end, the README's first command.

    settings.py   the demo's options and settings (the environment's, with the demo's home)
    landing.py    the app's daily export (producer "app") and the schedule's ticks for its days
    journey.py    export → ensure the model → publish → run the coordinator until idle
    runs.py       the journey's runs as the state store records them
    progress.py   the live rich table of runs by state
    results.py    rows pushed, the product table's contents, the command to look at them
    summary.py    the summary model, printed as tables or as one JSON object

The pipeline itself is examples/website_scores/pipeline.yaml: load (dlt) → reporting tables
(dbt) → features (Spark) → scores (MLflow) → push, each step started by the one before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.demo.journey import run_demo


def __getattr__(name: str) -> Any:
    # The journey pulls in the store, the engine and the bus; `coord --help` should not.
    if name == "run_demo":
        from coordinator.demo.journey import run_demo

        return run_demo
    raise AttributeError(name)


__all__ = ["run_demo"]
