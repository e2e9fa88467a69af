"""Completion events from a dbt run's artifacts (target/run_results.json + target/manifest.json).

One event per model, seed or snapshot dbt built: succeeded for status "success", failed (with
dbt's message) for "error". Skipped nodes were not built and tests are not datasets, so they
give none. The dataset is the node's relation name without quotes (`"db"."main"."orders"` →
`db.main.orders`); columns come from the manifest, with the warehouse's types from
catalog.json when `dbt docs generate` wrote one. The event id is derived from dbt's
invocation id and the node, so publishing the same artifacts twice is harmless downstream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coordinator.errors import EventError
from coordinator.events import Column, CompletionEvent, Status, parse_time

BUILT_TYPES = ("model", "seed", "snapshot")
_STATUS = {"success": Status.SUCCEEDED, "error": Status.FAILED}


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise EventError("invalid", f"{path} not found: run dbt first, or give its target/ folder") from None
    except (OSError, ValueError) as exc:
        raise EventError("undecodable", f"{path}: {exc}") from None


def relation_to_dataset(relation_name: str) -> str:
    """`"db"."schema"."table"` (or backquoted, or bare) → `db.schema.table`."""
    parts = [p.strip().strip('"`[]') for p in relation_name.split(".")]
    return ".".join(p for p in parts if p)


def _completed_at(result: Mapping[str, Any]) -> datetime | None:
    for step in reversed(result.get("timing") or []):
        when = parse_time(step.get("completed_at"))
        if when:
            return when
    return None


def _columns(node: Mapping[str, Any], catalog_node: Mapping[str, Any] | None) -> tuple[Column, ...] | None:
    if catalog_node and catalog_node.get("columns"):
        ordered = sorted(catalog_node["columns"].values(), key=lambda c: c.get("index", 0))
        return tuple(Column(name=c["name"], type=str(c.get("type") or "unknown")) for c in ordered)
    declared = node.get("columns") or {}
    if not declared:
        return None
    return tuple(
        Column(name=c.get("name") or name, type=str(c.get("data_type") or "unknown"))
        for name, c in declared.items()
    )


def events_from_dbt(
    target: str | Path, *, partition: str | None = None, producer: str = "dbt"
) -> list[CompletionEvent]:
    """The completion events of the dbt run whose artifacts are in `target`, in dbt's result order.

    Raises EventError when the artifacts are missing or unreadable.
    """
    target = Path(target)
    run_results = _load(target / "run_results.json")
    manifest = _load(target / "manifest.json")
    catalog = _load(target / "catalog.json") if (target / "catalog.json").exists() else {}
    nodes = manifest.get("nodes", {})
    invocation = run_results.get("metadata", {}).get("invocation_id") or "unknown"
    generated_at = parse_time(run_results.get("metadata", {}).get("generated_at")) or datetime.now(UTC)
    events = []
    for result in run_results.get("results", []):
        unique_id = result.get("unique_id", "")
        node = nodes.get(unique_id)
        status = _STATUS.get(str(result.get("status")))
        if node is None or status is None or node.get("resource_type") not in BUILT_TYPES:
            continue
        relation = node.get("relation_name")
        if not relation:  # ephemeral models build no relation
            continue
        rows = (result.get("adapter_response") or {}).get("rows_affected")
        attributes = {"dbt_unique_id": unique_id, "dbt_resource_type": node["resource_type"]}
        materialized = (node.get("config") or {}).get("materialized")
        if materialized:
            attributes["dbt_materialized"] = str(materialized)
        events.append(
            CompletionEvent(
                event_id=f"dbt:{invocation}:{unique_id}",
                dataset=relation_to_dataset(relation),
                partition=partition,
                status=status,
                producer=producer,
                producer_run_id=invocation,
                produced_at=_completed_at(result) or generated_at,
                row_count=rows if isinstance(rows, int) and rows >= 0 else None,
                columns=_columns(node, catalog.get("nodes", {}).get(unique_id)),
                error=(str(result.get("message") or "dbt reported an error"))[:20000]
                if status is Status.FAILED
                else None,
                attributes=attributes,
            )
        )
    return events
