"""Completion events from a dbt invocation's artifacts (target/run_results.json + manifest.json).

Only an invocation that builds — `dbt run`, `build`, `seed`, `snapshot` (and `dbt retry` of
one: run_results' `args.which` names the command retried) — announces anything. `compile`,
`docs generate`, `show`, `test`, `run-operation`... write a run_results.json whose nodes all say
"success" although nothing was built: those give no events and a `nothing_built` line saying
why, and so do `run --empty` (schema only, no rows) and `run --sample` (some of the rows).

One event per model, seed or snapshot built: succeeded for status "success", failed (with dbt's
message) for "error" or "partial success". Skipped nodes were not built and tests are not
datasets, so they give none. The dataset is the node's relation name without quotes
(`"db"."main"."orders"` → `db.main.orders`). `row_count` is dbt's `adapter_response.rows_affected`
— the rows the statement inserted or changed (a seed's rows, an incremental model's merged
rows), not the table's size; absent when the adapter reports none (DuckDB's `create table as`).

Columns come from the manifest (declared names, `data_type` where given), with the warehouse's
types from catalog.json only when the same invocation wrote it: a catalog from another
invocation describes other tables (or older ones), so it is left out with a note.

`hold_on_test_failure`: a model whose tests failed or errored in this invocation (a test
attaches to its model by the manifest's `attached_node`, a singular test to the models in its
`depends_on.nodes`) is announced failed, its error naming the tests, so downstream waits
instead of building on data its own tests refused.

The event id is derived from dbt's invocation id and the node, so publishing the same
artifacts twice is harmless downstream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from coordinator.errors import EventError
from coordinator.events import Column, CompletionEvent, Status, derived_event_id, parse_time

log = logging.getLogger(__name__)

BUILT_TYPES = ("model", "seed", "snapshot")
BUILD_COMMANDS = ("run", "build", "seed", "snapshot")
_STATUS = {"success": Status.SUCCEEDED, "error": Status.FAILED, "partial success": Status.FAILED}
_TEST_FAILED = ("fail", "error")
# run_results' `args.which` → the command a user typed
_COMMAND = {"generate": "docs generate", "serve": "docs serve", "freshness": "source freshness"}


@dataclass(frozen=True)
class DbtRun:
    """What one dbt invocation's artifacts announce.

    `nothing_built` says why there are no events at all (None when the invocation builds);
    `notes` are the artifacts' problems worth a warning (a catalog left out, a newer manifest,
    failed tests held or not)."""

    command: str
    invocation_id: str
    events: list[CompletionEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nothing_built: str | None = None


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EventError("invalid", f"{path} not found: run dbt first, or give its target/ folder") from None
    except (OSError, ValueError) as exc:
        raise EventError("undecodable", f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise EventError("invalid", f"{path}: a JSON object expected, got {type(data).__name__}")
    return data


def _part(data: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = data.get(key, kind())
    if not isinstance(value, kind):
        got = type(value).__name__
        raise EventError("invalid", f"{path}: {key!r} should be a {kind.__name__}, got {got}")
    return value


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
        ordered = sorted(catalog_node["columns"].items(), key=lambda item: item[1].get("index", 0))
        return tuple(Column(name=str(c.get("name") or name), type=str(c.get("type") or "unknown"))
                     for name, c in ordered)
    declared = node.get("columns") or {}
    if not declared:
        return None
    return tuple(
        Column(name=c.get("name") or name, type=str(c.get("data_type") or "unknown"))
        for name, c in declared.items()
    )


def _failed_tests(results: list[dict[str, Any]], manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """Model unique id → "test_name (fail: message)" for every test that failed or errored."""
    tests = {**manifest.get("nodes", {}), **(manifest.get("unit_tests") or {})}
    held: dict[str, list[str]] = {}
    for result in results:
        if str(result.get("status")) not in _TEST_FAILED:
            continue
        test = tests.get(result.get("unique_id", ""))
        if test is None or test.get("resource_type") not in ("test", "unit_test"):
            continue
        attached = test.get("attached_node")
        models = [attached] if attached else list((test.get("depends_on") or {}).get("nodes") or [])
        lines = str(result.get("message") or "").strip().splitlines()
        why = f"{result['status']}: {lines[0]}" if lines else result["status"]
        what = f"{test.get('name', result['unique_id'])} ({why})"
        for model in models:
            held.setdefault(model, []).append(what)
    return held


def _command(run_results: Mapping[str, Any], path: Path) -> tuple[str, str]:
    """(run_results' `args.which`, the command as typed) — EventError when the artifacts do not say."""
    args = run_results.get("args")
    which = args.get("which") if isinstance(args, dict) else None
    if not isinstance(which, str) or not which:
        raise EventError(
            "invalid",
            f"{path} does not say which dbt command wrote it (no args.which; dbt 1.5 or later writes it)",
        )
    return which, _COMMAND.get(which, which)


def _is_test(result: Mapping[str, Any]) -> bool:
    return result["unique_id"].startswith(("test.", "unit_test."))


def _catalog_nodes(target: Path, invocation: str, notes: list[str]) -> Mapping[str, Any]:
    """The catalog's nodes when this invocation wrote it; else none, and a note why."""
    if not (target / "catalog.json").exists():
        return {}
    catalog = _load(target / "catalog.json")
    written_by = (catalog.get("metadata") or {}).get("invocation_id")
    if written_by == invocation:
        return catalog.get("nodes") or {}
    notes.append(f"catalog.json is from dbt invocation {written_by}, not this run's {invocation}: "
                 "column types come from the manifest only")
    return {}


def _event(result: Mapping[str, Any], node: Mapping[str, Any], run: DbtRun, held: list[str] | None,
           catalog_node: Mapping[str, Any] | None, partition: str | None, producer: str,
           generated_at: datetime) -> CompletionEvent:
    unique_id = result["unique_id"]
    status = _STATUS[str(result.get("status"))]
    error = None
    attributes = {"dbt_unique_id": unique_id, "dbt_resource_type": node["resource_type"],
                  "dbt_command": run.command}
    if status is Status.FAILED:
        error = str(result.get("message") or f"dbt reported {result.get('status')}")
    elif held:
        status, error = Status.FAILED, "held: dbt tests failed: " + "; ".join(held)
        attributes["dbt_failed_tests"] = ", ".join(t.split(" (")[0] for t in held)
    materialized = (node.get("config") or {}).get("materialized")
    if materialized:
        attributes["dbt_materialized"] = str(materialized)
    rows = (result.get("adapter_response") or {}).get("rows_affected")
    try:
        return CompletionEvent(
            event_id=derived_event_id("dbt", run.invocation_id, unique_id),
            dataset=relation_to_dataset(str(node["relation_name"])),
            partition=partition,
            status=status,
            producer=producer,
            producer_run_id=run.invocation_id,
            produced_at=_completed_at(result) or generated_at,
            row_count=rows if isinstance(rows, int) and rows >= 0 else None,
            columns=_columns(node, catalog_node),
            error=error[:20000] if error else None,
            attributes=attributes,
        )
    except ValidationError as exc:  # a relation name or message no event can carry
        raise EventError("invalid", f"{unique_id}: {exc}"[:1000]) from None


def read_dbt_run(
    target: str | Path,
    *,
    partition: str | None = None,
    producer: str = "dbt",
    hold_on_test_failure: bool = False,
) -> DbtRun:
    """What the dbt invocation whose artifacts are in `target` announces, in dbt's result order.

    Raises EventError when the artifacts are missing, unreadable or not dbt's.
    """
    try:
        return _read(Path(target), partition, producer, hold_on_test_failure)
    except (AttributeError, KeyError, TypeError) as exc:  # a field of another shape than dbt writes
        why = f"{target}: not the artifacts dbt writes ({type(exc).__name__}: {exc})"
        raise EventError("invalid", why) from None


def _read(target: Path, partition: str | None, producer: str, hold_on_test_failure: bool) -> DbtRun:
    results_path = target / "run_results.json"
    run_results = _load(results_path)
    metadata = _part(run_results, "metadata", dict, results_path)
    results = _part(run_results, "results", list, results_path)
    for i, result in enumerate(results):
        if not isinstance(result, dict) or not isinstance(result.get("unique_id"), str):
            raise EventError("invalid", f"{results_path}: results[{i}] is not a node's result (no unique_id)")
    invocation = str(metadata.get("invocation_id") or "unknown")
    which, command = _command(run_results, results_path)
    if which not in BUILD_COMMANDS:
        failed = sum(_is_test(r) and str(r.get("status")) in _TEST_FAILED for r in results)
        tests = f"; {failed} test(s) failed or errored, with no model built to hold" if failed else ""
        why = f"dbt `{command}` artifacts in {target}: that command builds nothing{tests}"
        return DbtRun(command, invocation, nothing_built=why)
    if run_results["args"].get("empty"):
        why = f"dbt `{command} --empty` artifacts in {target}: schema only, no rows"
        return DbtRun(command, invocation, nothing_built=why)
    if run_results["args"].get("sample"):
        why = f"dbt `{command} --sample` artifacts in {target}: a sample of the data, not all of it"
        return DbtRun(command, invocation, nothing_built=why)

    run = DbtRun(command, invocation)
    manifest_path = target / "manifest.json"
    manifest = _load(manifest_path)
    nodes = _part(manifest, "nodes", dict, manifest_path)
    manifest_invocation = (manifest.get("metadata") or {}).get("invocation_id")
    if manifest_invocation and manifest_invocation != invocation:
        run.notes.append(f"manifest.json is from dbt invocation {manifest_invocation}, run_results.json from "
                         f"{invocation} (a later dbt command rewrote it): relation names and columns are its")
    catalog_nodes = _catalog_nodes(target, invocation, run.notes)
    held = _failed_tests(results, manifest) if hold_on_test_failure else {}
    if hold_on_test_failure and not any(_is_test(r) for r in results):
        run.notes.append(f"no tests ran in dbt `{command}`: nothing to hold (`dbt build` runs them)")
    generated_at = parse_time(metadata.get("generated_at")) or datetime.now(UTC)
    unknown = []
    for result in results:
        uid = result["unique_id"]
        node = nodes.get(uid)
        if node is None:
            if not _is_test(result):
                unknown.append(uid)
        elif (
            str(result.get("status")) in _STATUS
            and node.get("resource_type") in BUILT_TYPES
            and node.get("relation_name")  # ephemeral models build no relation
        ):
            run.events.append(_event(result, node, run, held.get(uid), catalog_nodes.get(uid),
                                     partition, producer, generated_at))
    if unknown:
        run.notes.append(f"{len(unknown)} result(s) name nodes manifest.json does not have, left out: "
                         + ", ".join(unknown[:5]))
    built = {e.attributes["dbt_unique_id"] for e in run.events}
    for model in sorted(set(held) - built):
        run.notes.append(f"tests failed on {model}, which this invocation did not build: nothing held "
                         f"({'; '.join(held[model])})")
    return run


def events_from_dbt(
    target: str | Path,
    *,
    partition: str | None = None,
    producer: str = "dbt",
    hold_on_test_failure: bool = False,
) -> list[CompletionEvent]:
    """The events of `read_dbt_run` (its notes and any "nothing built" are logged as warnings)."""
    run = read_dbt_run(target, partition=partition, producer=producer,
                       hold_on_test_failure=hold_on_test_failure)
    for note in [*run.notes, *([run.nothing_built] if run.nothing_built else [])]:
        log.warning("%s", note)
    return run.events
