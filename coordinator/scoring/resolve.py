"""Resolve a model reference to one exact registered version, once, when a run starts.

An alias moves (that is how a new champion is rolled out), so a run that resolved
`models:/churn@champion` must keep the version it resolved: it scores with it and records it
in the run and in its output event, which makes every score traceable to a model version.

Accepted forms: `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/NAME/latest`, and the
same without the `models:/` prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.errors import ScoringError
from coordinator.kinds.score import ModelRef, parse_ref

__all__ = ["ModelRef", "ResolvedModel", "parse_ref", "registry_client", "resolve"]


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    version: str
    requested: str  # the reference as written in the spec
    alias: str | None = None
    run_id: str | None = None

    @property
    def uri(self) -> str:
        """The immutable URI of this exact version (never the alias)."""
        return f"models:/{self.name}/{self.version}"


def registry_client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def resolve(ref: str, tracking_uri: str, client: object | None = None) -> ResolvedModel:
    """The exact version `ref` names now. Raises ScoringError when it does not exist."""
    from mlflow.exceptions import MlflowException

    parsed = parse_ref(ref)
    client = client or registry_client(tracking_uri)
    try:
        if parsed.alias is not None:
            found = client.get_model_version_by_alias(parsed.name, parsed.alias)
        elif parsed.version == "latest":
            versions = client.search_model_versions(f"name = '{parsed.name}'")
            if not versions:
                raise ScoringError(f"model {parsed.name!r} has no versions in {tracking_uri}")
            found = max(versions, key=lambda v: int(v.version))
        else:
            found = client.get_model_version(parsed.name, parsed.version)
    except MlflowException as exc:
        raise ScoringError(f"cannot resolve {ref!r} in {tracking_uri}: {exc.message}") from exc
    return ResolvedModel(
        name=parsed.name, version=str(found.version), requested=ref, alias=parsed.alias, run_id=found.run_id
    )
