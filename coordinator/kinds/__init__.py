"""The job kinds: each kind's `settings:` model, in modules light enough to import while a spec loads.

    command.py      CommandSettings      any executable
    spark.py        SparkSettings        spark-submit of an application
    score.py        ScoreSettings        an MLflow model over a table
    reverse_etl.py  PushSettings         rows into a product database or a topic
    el.py           ElSettings           a dlt source of the project loaded into a destination
    dbt.py          DbtSettings          dbt build of a selection of a dbt project
    stream.py       StreamSettings       a supervised faust worker: closed windows → hourly partitions

Why a package of its own: validating a spec needs each kind's settings model, and reaching it
through the launchers imported every adapter (Spark, scoring, the push engine and their
drivers) just to check a YAML file. These modules import pydantic and the standard library
only. KINDS is the one list of kinds: where each one's settings model and launcher live, as
names imported on first use (launchers/registry.py builds the launchers from it).
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from pydantic import BaseModel


class Kind(NamedTuple):
    settings: str  # "module:class" of the settings model (light)
    launcher: str  # "module:class" of the launcher (heavy: imported only to run a job)


KINDS: dict[str, Kind] = {
    "command": Kind(
        "coordinator.kinds.command:CommandSettings", "coordinator.launchers.command:CommandLauncher"
    ),
    "spark": Kind("coordinator.kinds.spark:SparkSettings", "coordinator.launchers.spark:SparkLauncher"),
    "score": Kind("coordinator.kinds.score:ScoreSettings", "coordinator.launchers.score:ScoreLauncher"),
    "reverse_etl": Kind(
        "coordinator.kinds.reverse_etl:PushSettings", "coordinator.launchers.reverse_etl:ReverseEtlLauncher"
    ),
    "el": Kind("coordinator.kinds.el:ElSettings", "coordinator.launchers.el:ElLauncher"),
    "dbt": Kind("coordinator.kinds.dbt:DbtSettings", "coordinator.launchers.dbt:DbtLauncher"),
    "stream": Kind("coordinator.kinds.stream:StreamSettings", "coordinator.launchers.stream:StreamLauncher"),
}


def kind(name: str) -> Kind:
    """The kind called `name`; KeyError naming the known kinds for any other."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown job kind {name!r}; known kinds: {', '.join(sorted(KINDS))}") from None


def imported(target: str) -> Any:
    """The object a "module:name" string names, importing its module."""
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def settings_model(name: str) -> type[BaseModel]:
    return imported(kind(name).settings)
