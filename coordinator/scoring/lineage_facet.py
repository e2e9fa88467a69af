"""The model a score run used, as a custom OpenLineage run facet (`coordinator_model`).

A score run resolves its alias (models:/churn@champion) to one exact version when it starts;
the version is on the run's details, on its output events and in the scores table. OpenLineage
consumers see it in the run events of the run: COMPLETE (and FAIL, once the scorer got as far
as resolving the model) carry {"name", "version", "uri"} — START cannot, the version is not
known before the scorer resolves it. The facet's JSON schema is model_run_facet.json beside
this file; its `_schemaURL` names it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attr
from openlineage.client.facet_v2 import RunFacet

from coordinator import __version__

FACET_NAME = "coordinator_model"
SCHEMA_PATH = Path(__file__).with_name("model_run_facet.json")
SCHEMA_URL = f"urn:coordinator:{__version__}:facets:ModelRunFacet"


@attr.define
class ModelRunFacet(RunFacet):
    """name, version and URI (models:/NAME/VERSION) of the registered model a run scored with."""

    name: str
    version: str
    uri: str

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL


def model_facet(details: Mapping[str, Any], producer: str) -> ModelRunFacet | None:
    """The facet of a run whose details name its model (the score kind's), else None."""
    name, version = details.get("model_name"), details.get("model_version")
    if not name or version is None:
        return None
    uri = details.get("model_uri") or f"models:/{name}/{version}"
    return ModelRunFacet(name=str(name), version=str(version), uri=str(uri), producer=producer)


def facet_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
