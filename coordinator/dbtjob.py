"""The child side of the `dbt` kind: one dbt invocation for one partition, reported node by node.

Started by launchers/dbt.py as `python -m coordinator.dbtjob` with the job's settings (JSON) in
COORD_DBT_SETTINGS. In one process, with dbt-core's programmatic runner (the project is parsed
once and the manifest handed to the next commands):
1. `dbt parse`, then `dbt ls` of the job's --select/--exclude: a declared output that is no node
   the selection builds blocks the run (details `blocked`), naming it, before anything is built;
2. `dbt build` (or run/seed/snapshot); every command has --vars {partition, window_start,
   window_end, ...}, so configs that use them (an external model's `location`) are rendered for
   the run, and the folders of external models' locations are made (DuckDB makes none);
   artifacts go to the run's own folder, so they are this invocation's and no other run's;
3. with `catalog: true`, `dbt docs generate` into a folder of its own (it would rewrite the
   build's artifacts), whose warehouse types replace the manifest's for the nodes built;
4. the artifacts are read by coordinator/dbt.py (the same reading `coord publish --from-dbt`
   does, with failed tests holding their model) and each declared output reported with its own
   status: built, failed (a node error, or its tests failed — named), or skipped (no event; a
   line saying which upstream node stopped it).
The run fails when anything in the invocation failed; when only tests failed it is blocked (the
same data fails the same tests again: it waits for new inputs or `coord retry`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coordinator.dbt import BUILT_TYPES, _columns, read_dbt_run, relation_to_dataset
from coordinator.errors import EventError
from coordinator.events import CompletionEvent, Status
from coordinator.kinds.dbt import DbtSettings
from coordinator.launchers.child import BLOCKED, Refused, child_args, finish, one_line
from coordinator.launchers.result import exit_child, report_details, report_output
from coordinator.spec.partitions import window

SETTINGS_ENV = "COORD_DBT_SETTINGS"
PARTIAL_PARSE = "partial_parse.msgpack"
BUILDS = {"build": BUILT_TYPES, "run": ("model",), "seed": ("seed",), "snapshot": ("snapshot",)}


class Invocation:
    """dbt-core's runner over one project, the manifest parsed once."""

    def __init__(self, settings: DbtSettings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        profiles = settings.profiles()
        self.common = [
            "--project-dir",
            str(settings.project()),
            *(["--profiles-dir", str(profiles)] if profiles else []),
            "--log-path",
            str(workdir / "logs"),
            "--no-send-anonymous-usage-stats",
            "--no-use-colors",
        ]
        if settings.target:
            self.common += ["--target", settings.target]
        self.manifest: Any = None

    def invoke(self, *args: str, target_path: Path) -> Any:
        from dbt.cli.main import dbtRunner

        done = dbtRunner(manifest=self.manifest).invoke(
            [*args, *self.common, "--target-path", str(target_path)]
        )
        if done.exception is not None:  # dbt could not run the command at all
            raise Refused(
                f"dbt {args[0]} failed: {type(done.exception).__name__}: {one_line(str(done.exception))}"
            )
        return done

    def selection(self) -> list[str]:
        out = []
        if self.settings.select:
            out += ["--select", *self.settings.select]
        if self.settings.exclude:
            out += ["--exclude", *self.settings.exclude]
        return out

    def parse(self, target: Path) -> dict[str, Any]:
        """Parse the project, from dbt's partial-parse state in its target/ when there is one (dbt
        checks it still fits — files, profile, vars — and parses in full when it does not)."""
        state = self.settings.project() / "target" / PARTIAL_PARSE
        if state.is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(state, target / PARTIAL_PARSE)
        done = self.invoke("parse", target_path=target)
        if not done.success:
            raise Refused("dbt parse failed (see the log above)")
        self.manifest = done.result
        return json.loads((target / "manifest.json").read_text())

    def selected(self, target: Path) -> list[str]:
        kinds = [a for t in BUILDS[self.settings.command] for a in ("--resource-type", t)]
        done = self.invoke(
            "ls",
            *self.selection(),
            *kinds,
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            "--quiet",
            target_path=target,
        )
        return [json.loads(line)["unique_id"] for line in done.result or ()]


def dbt_vars(settings: DbtSettings, partition: str | None) -> str:
    start, end = window(partition) or (None, None)
    return json.dumps(
        {
            **settings.vars,
            "partition": partition,
            "window_start": start and start.isoformat(),
            "window_end": end and end.isoformat(),
        }
    )


def check_outputs(
    settings: DbtSettings, nodes: Mapping[str, Any], selected: list[str], outputs: list[str]
) -> None:
    """Refuse (blocked) when a declared output is no node this job's selection builds."""
    chosen = {settings.dataset_of(nodes[uid]) for uid in selected if uid in nodes}
    missing = [o for o in outputs if o not in chosen]
    if missing:
        what = " ".join(a for a in ("--select", *settings.select) if settings.select) or "the whole project"
        shown = ", ".join(sorted(filter(None, chosen))) or "nothing"
        raise Refused(
            f"blocked: outputs {', '.join(missing)} are not nodes this job selects ({what}"
            f"{' --exclude ' + ' '.join(settings.exclude) if settings.exclude else ''}; "
            f"it builds {shown})"
        )


def skipped_lines(results: list[dict[str, Any]], nodes: Mapping[str, Any], held: set[str]) -> dict[str, str]:
    """Unique id of each skipped node → why, naming the upstream nodes that failed or were held."""
    status = {r["unique_id"]: str(r.get("status")) for r in results}
    out = {}
    for uid, state in status.items():
        if state != "skipped" or uid.startswith(("test.", "unit_test.")):
            continue
        upstream = (nodes.get(uid, {}).get("depends_on") or {}).get("nodes") or []
        stopped = [u for u in upstream if status.get(u) in ("error", "skipped") or u in held]
        out[uid] = "skipped by dbt: " + (
            f"upstream {', '.join(stopped)} failed, was held or skipped"
            if stopped
            else "an upstream node failed"
        )
    return out


def catalog_columns(inv: Invocation, nodes: Mapping[str, Any]) -> dict[str, Any]:
    """Unique id → the warehouse's columns, from a `docs generate` of the same selection."""
    folder = inv.workdir / "catalog"
    folder.mkdir(parents=True, exist_ok=True)  # --no-compile writes into it without making it
    inv.invoke("docs", "generate", "--no-compile", *inv.selection(), "--quiet", target_path=folder)
    catalog = json.loads((folder / "catalog.json").read_text()).get("nodes") or {}
    return {uid: _columns(nodes[uid], catalog[uid]) for uid in catalog if uid in nodes}


def location(node: Mapping[str, Any]) -> str | None:
    """Where a node's data is: an external model's files (dbt-duckdb), else its relation."""
    config = node.get("config") or {}
    if config.get("materialized") == "external" and config.get("location"):
        return str(config["location"])
    relation = node.get("relation_name")
    return relation_to_dataset(str(relation)) if relation else None


def report(
    settings: DbtSettings,
    outputs: list[str],
    events: list[CompletionEvent],
    nodes: Mapping[str, Any],
    skipped: Mapping[str, str],
    columns: Mapping[str, Any],
) -> list[str]:
    """Report each declared output with its own status; the outputs not built (skipped)."""
    by_dataset = {settings.dataset_of(nodes[e.attributes["dbt_unique_id"]]): e for e in events}
    uid_of = {
        settings.dataset_of(n): uid for uid, n in nodes.items() if n.get("resource_type") in BUILT_TYPES
    }
    not_built = []
    for dataset in outputs:
        event = by_dataset.get(dataset)
        uid = uid_of.get(dataset, "?")
        if event is None:
            why = skipped.get(uid, "not built by this invocation")
            print(f"{uid} ({dataset}): {why}: no event")
            report_output(dataset, status="skipped", error=why, attributes={"dbt_unique_id": uid})
            not_built.append(uid)
            continue
        ok = event.status is Status.SUCCEEDED
        report_output(
            dataset,
            location=location(nodes[uid]),
            row_count=event.row_count,
            columns=columns.get(uid, event.columns),
            attributes=event.attributes,
            status="succeeded" if ok else "failed",
            error=event.error,
        )
        print(f"{uid} ({dataset}): {'built' if ok else one_line(event.error or 'failed')}")
    for dataset in sorted(set(by_dataset) - set(outputs)):
        uid = by_dataset[dataset].attributes["dbt_unique_id"]
        print(f"note: {uid} ({dataset}) built, not an output of the job: no event")
    return not_built


def make_folders(nodes: Mapping[str, Any], selected: list[str]) -> None:
    """Make the folders the selected external models write into: DuckDB's COPY makes none, so a
    location such as lake/reporting/events/date=2026-01-02/events.parquet failed on a new day."""
    for uid in selected:
        config = (nodes.get(uid) or {}).get("config") or {}
        where = str(config.get("location") or "")
        if config.get("materialized") == "external" and where and "://" not in where:
            Path(where).parent.mkdir(parents=True, exist_ok=True)


def run(settings: DbtSettings, partition: str | None, outputs: list[str], workdir: Path) -> None:
    inv = Invocation(settings, workdir)
    # every command renders the project with the run's vars: configs (an external model's
    # `location`) and the profile are rendered when parsing, not again by the build
    inv.common += ["--vars", dbt_vars(settings, partition)]
    parsed = workdir / "parse"
    nodes = inv.parse(parsed)["nodes"]
    selected = inv.selected(parsed)
    check_outputs(settings, nodes, selected, outputs)
    make_folders(nodes, selected)
    target = workdir / "target"
    extra = ["--full-refresh"] if settings.full_refresh else []
    extra += ["--threads", str(settings.threads)] if settings.threads else []
    inv.invoke(
        settings.command,
        *inv.selection(),
        *extra,
        target_path=target,
    )
    try:
        found = read_dbt_run(target, partition=partition, producer="dbt", hold_on_test_failure=True)
    except EventError as exc:
        raise Refused(f"dbt {settings.command} left no artifacts to read: {exc}") from exc
    for note in found.notes:
        if "a later dbt command rewrote it" not in note:  # the parse step's manifest, on purpose
            print(f"note: {note}")
    results = json.loads((target / "run_results.json").read_text())["results"]
    held = {e.attributes["dbt_unique_id"] for e in found.events if e.attributes.get("dbt_failed_tests")}
    skipped = skipped_lines(results, nodes, held)
    for uid, why in skipped.items():
        print(f"{uid}: {why}")
    columns = catalog_columns(inv, nodes) if settings.catalog else {}
    not_built = report(settings, outputs, found.events, nodes, skipped, columns)
    errored = [
        r["unique_id"]
        for r in results
        if str(r.get("status")) == "error" and not r["unique_id"].startswith(("test.", "unit_test."))
    ]
    report_details(
        {
            "dbt_invocation_id": found.invocation_id,
            "dbt_command": found.command,
            "skipped": sorted(skipped),
            "errored": errored,
            "held": sorted(held),
        }
    )
    failures = [
        f"{e.attributes['dbt_unique_id']}: {one_line(e.error or 'failed')}"
        for e in found.events
        if e.status is Status.FAILED
    ]
    if not_built:
        failures.append(f"not built: {', '.join(not_built)}")
    if failures:
        line = f"dbt {settings.command}: " + "; ".join(failures)
        raise Refused(("" if errored else BLOCKED) + line[:4000])


def main(argv: list[str] | None = None) -> int:
    args = child_args("coordinator.dbtjob").parse_args(argv)
    settings = DbtSettings.model_validate(json.loads(os.environ[SETTINGS_ENV]))
    return finish(lambda: run(settings, args.partition, args.output, args.workdir))


if __name__ == "__main__":
    exit_child(main())
