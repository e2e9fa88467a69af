"""A launcher's durable pointer to a running job: what the store keeps with a run.

Its own light module so that the state store (which stores and reads it) imports no launcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Handle:
    """A launcher's durable pointer to a running job (stored as JSON with the run)."""

    kind: str
    data: Mapping[str, object]
