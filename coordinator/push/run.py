"""`python -m coordinator.push.run`: one push as its own process (what the `reverse_etl` launcher starts).

The push settings arrive in the COORD_PUSH_SETTINGS variable (JSON; it may hold a password, so
it is kept out of argv and out of files). The counts go back through the result protocol:
`report_details` for the run record, `report_output` (counts as attributes) for each output
dataset's completion event. Exit code 0 on success, 1 on a push error (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from coordinator.errors import CoordinatorError
from coordinator.launchers.result import exit_child, report_details, report_output
from coordinator.push.config import PushSettings
from coordinator.push.engine import PushResult, push
from coordinator.push.sources import Source

SETTINGS_ENV = "COORD_PUSH_SETTINGS"


def resolve_source(settings: PushSettings, partition: str | None, location: str | None) -> Source:
    """The source of this run: the input's location, or the settings' path/query/table."""
    src = settings.source
    if src.input:
        if not location:
            raise CoordinatorError(f"input {src.input!r} has no location to push from")
        return Source("parquet", location)
    if src.parquet:
        return Source("parquet", src.parquet.replace("{partition}", partition or ""))
    if src.sql:
        return Source("sql", src.sql, url=src.url)
    return Source("spark", str(src.spark))


def push_job(settings: PushSettings, source: Source, *, job: str, **options: Any) -> PushResult:
    """`push` as a job's settings describe it (the one place that unpacks PushSettings);
    `options` are push's own (state_dir, rejects_path, dry_run, full, progress, kafka_bootstrap)."""
    return push(
        source,
        settings.destination,
        job=job,
        key=settings.key,
        mode=settings.mode,
        columns=settings.columns,
        create_table=settings.create_table,
        max_rejected_fraction=settings.max_rejected_fraction,
        **options,
    )


def run(
    settings: PushSettings,
    *,
    job: str,
    partition: str | None,
    location: str | None,
    state_dir: Path,
    rejects: Path | None,
    outputs: list[str],
    dry_run: bool = False,
    kafka_bootstrap: str | None = None,
) -> PushResult:
    result = push_job(
        settings,
        resolve_source(settings, partition, location),
        job=job,
        state_dir=state_dir,
        rejects_path=rejects,
        dry_run=dry_run,
        kafka_bootstrap=kafka_bootstrap,
    )
    details = {
        **result.counts(),
        "full": result.full,
        "reason": result.reason,
        "push_id": result.push_id,
        "reject_reasons": result.reject_reasons,
        "rejects_path": result.rejects_path,
    }
    report_details(details)
    target = settings.destination
    location_out = f"{target.url.split('://', 1)[0]}:{target.table or ''}"
    for dataset in outputs:
        report_output(
            dataset,
            location=location_out,
            row_count=result.inserted + result.updated,
            attributes={k: str(v) for k, v in result.counts().items()},
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coordinator.push.run", description=__doc__)
    parser.add_argument("--job", required=True)
    parser.add_argument("--partition")
    parser.add_argument("--location", help="the input's location (for source: {input: ...})")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--rejects", type=Path)
    parser.add_argument("--output", action="append", default=[])
    parser.add_argument("--kafka-bootstrap")
    args = parser.parse_args(argv)
    raw = os.environ.get(SETTINGS_ENV)
    if raw is None:
        print(f"error: {SETTINGS_ENV} is not set", file=sys.stderr)
        return 2
    try:
        settings = PushSettings.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        print(f"error: {SETTINGS_ENV} is not valid push settings: {problems}", file=sys.stderr)
        return 2
    try:
        result = run(
            settings,
            job=args.job,
            partition=args.partition,
            location=args.location,
            state_dir=args.state_dir,
            rejects=args.rejects,
            outputs=args.output,
            kafka_bootstrap=args.kafka_bootstrap,
        )
    except CoordinatorError as exc:  # one line: it becomes the run's error line
        print(f"error: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(json.dumps({**result.counts(), "full": result.full, "reason": result.reason}))
    return 0


if __name__ == "__main__":
    exit_child(main())
