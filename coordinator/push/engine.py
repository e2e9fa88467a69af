"""`push(...)`: read → map → check the destination → reject → diff → apply atomically → save state.

Order of durable effects (the reason the destination is never half-written and the state never
runs ahead of it): 1. the destination commits rows, deletes and its push marker in one
transaction; 2. only then is the state file replaced; 3. then the rejects file and the counts
are reported. A crash after 1 and before 2 leaves a state whose push id differs from the
destination's marker, so the next push is a full one (see coordinator/push/__init__.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from coordinator.errors import DestinationMismatch, PushError, TooManyRejects
from coordinator.identifiers import name_problems
from coordinator.push.config import DestinationSettings
from coordinator.push.destinations import Destination, Marker, open_destination
from coordinator.push.diff import KEY_HASH, ROW_HASH, PushState, StateFile, fingerprint, match, row_hashes
from coordinator.push.plan import Plan, render
from coordinator.push.rejects import Rejects
from coordinator.push.schema import check_columns, normalize, record_problems, value_problems
from coordinator.push.sources import Source, read_table

Progress = Callable[[str, int, int], None]  # (step, done, total)
STEPS = ("read", "check", "diff", "write", "state")


@dataclass(frozen=True)
class PushResult:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0
    rows_read: int = 0
    full: bool = False
    reason: str = ""
    push_id: str | None = None
    dry_run: bool = False
    reject_reasons: dict[str, int] = field(default_factory=dict)
    rejects_path: str | None = None
    plan: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in ("inserted", "updated", "deleted", "unchanged", "rejected", "skipped")
        }

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def push(
    source: Source | pa.Table | str,
    destination: DestinationSettings | Destination,
    *,
    job: str,
    key: Sequence[str],
    mode: str = "upsert",
    columns: Mapping[str, str] | None = None,
    create_table: bool = False,
    max_rejected_fraction: float = 0.0,
    state_dir: Path | str = ".coord/push",
    rejects_path: Path | str | None = None,
    dry_run: bool = False,
    full: bool = False,
    progress: Progress | None = None,
    kafka_bootstrap: str | None = None,
) -> PushResult:
    """Push `source` into `destination` for `job`; see the module docstring for the guarantees.

    Raises DestinationMismatch (nothing written) when the table does not fit, TooManyRejects
    when more than `max_rejected_fraction` of the rows are rejected, PushError otherwise.
    """
    if mode not in ("insert", "upsert", "update", "mirror"):
        raise PushError(f"unknown mode {mode!r}")
    started = time.monotonic()
    report = progress or (lambda step, done, total: None)
    report("read", 0, 1)
    table = (
        source
        if isinstance(source, pa.Table)
        else read_table(source if isinstance(source, Source) else Source("parquet", str(source)))
    )
    report("read", table.num_rows, table.num_rows)
    mapping = list(columns.items()) if columns else [(n, n) for n in table.column_names]
    table, key = _map(table, mapping, key)
    dest = (
        destination
        if isinstance(destination, Destination)
        else open_destination(destination, kafka_bootstrap)
    )
    with dest:
        if dest.dialect:  # JSON records name their fields freely
            problems = name_problems(dest.dialect, [("column", c) for c in table.column_names])
            if problems:
                raise PushError("; ".join(problems))
        return _push(
            table,
            dest,
            job=job,
            key=key,
            mapping=mapping,
            mode=mode,
            create_table=create_table,
            max_rejected_fraction=max_rejected_fraction,
            state=StateFile(Path(state_dir), job, dest.identity),
            rejects_path=Path(rejects_path) if rejects_path else None,
            dry_run=dry_run,
            full=full,
            report=report,
            started=started,
        )


def _map(table: pa.Table, pairs: list[tuple[str, str]], key: Sequence[str]) -> tuple[pa.Table, list[str]]:
    missing = [s for s, _ in pairs if s not in table.column_names]
    if missing:
        raise PushError(
            f"source has no column(s) {', '.join(map(repr, missing))}; it has {table.column_names}"
        )
    table = normalize(table.select([s for s, _ in pairs]).rename_columns([d for _, d in pairs]))
    by_source = dict(pairs)
    resolved = [k if k in table.column_names else by_source.get(k, k) for k in key]
    absent = [k for k in resolved if k not in table.column_names]
    if absent:
        raise PushError(f"key column(s) {', '.join(map(repr, absent))} are not pushed")
    return table, resolved


def _push(
    table: pa.Table,
    dest: Destination,
    *,
    job: str,
    key: list[str],
    mapping: list[tuple[str, str]],
    mode: str,
    create_table: bool,
    max_rejected_fraction: float,
    state: StateFile,
    rejects_path: Path | None,
    dry_run: bool,
    full: bool,
    report: Progress,
    started: float,
) -> PushResult:
    total = table.num_rows
    report("check", 0, total)
    desc = dest.describe()
    creating = False
    if dest.keeps_marker and desc is None:
        if not create_table:
            raise DestinationMismatch(
                getattr(dest, "table", "?"),
                ["the table does not exist (set create_table to create it from the source schema)"],
            )
        creating = True
    elif desc is not None:
        problems = check_columns(table.schema, desc, key, dest.needs_unique_key and mode != "update")
        if problems:
            raise DestinationMismatch(desc.name, problems)

    # Rejects: null key, duplicate key, values the destination cannot hold.
    rejects = Rejects(table)
    has_key = np.ones(total, dtype=bool)
    for k in key:
        if table.column(k).null_count:
            null = pc.is_null(table.column(k)).to_numpy(zero_copy_only=False)
            rejects.add(f"null key {k}", null)
            has_key &= ~null
    key_hash = row_hashes(table, key)
    kh = key_hash.to_numpy()
    dups = duplicated(kh)
    if dups is not None:
        rejects.add("duplicate key in the source", dups)
    problems = (
        value_problems(table, desc, nan_ok=dest.nan_ok, nul_ok=dest.nul_ok)
        if desc is not None
        else record_problems(table, nan_ok=dest.nan_ok, nul_ok=dest.nul_ok)
    )
    for reason, mask in problems:
        rejects.add(reason, mask)
    rejected = rejects.count
    if rejected and rejects_path is not None:
        try:
            rejects.write(rejects_path)
        except OSError as exc:
            raise PushError(f"cannot write the rejected rows to {rejects_path}: {exc}") from exc
    if total and rejected / total > max_rejected_fraction:
        raise TooManyRejects(rejected, total, max_rejected_fraction, rejects.counts())
    report("check", total, total)

    # Hashes and the diff against the last trusted push.
    report("diff", 0, total)
    seen = pa.array(kh[has_key] if rejected else kh, pa.uint64())
    good = pa.array(~rejects.mask)
    hashed = table.append_column(KEY_HASH, key_hash).append_column(
        ROW_HASH, row_hashes(table, table.column_names)
    )
    valid = hashed.filter(good) if rejected else hashed
    fp = fingerprint(mapping, key, mode, table.schema)
    previous, reason, rows_before = _trusted_state(dest, state, job, fp, full=full, creating=creating)
    plan = _plan(
        valid,
        previous,
        seen,
        table.filter(pa.array(has_key)).select(key) if rejected else table.select(key),
        key,
        mode,
        reason,
        creating,
    )
    report("diff", total, total)

    result = dict(
        rows_read=total,
        rejected=rejected,
        reject_reasons=rejects.counts(),
        full=plan.full,
        reason=plan.reason,
        rejects_path=str(rejects_path) if rejected and rejects_path else None,
    )
    if dry_run:
        return PushResult(
            **result,
            unchanged=plan.unchanged,
            dry_run=True,
            plan=render(plan),
            seconds=time.monotonic() - started,
        )
    if plan.is_empty and previous is not None:  # nothing changed: nothing is written, state stays
        return PushResult(
            **result, unchanged=plan.unchanged, push_id=previous.push_id, seconds=time.monotonic() - started
        )

    report("write", 0, plan.rows.num_rows)
    push_id = uuid.uuid4().hex
    # a diff push knows the row count it starts from; a full push lets the destination count
    applied = dest.apply(plan, job, Marker(push_id, fp, rows_before if previous is not None else -1))
    report("write", plan.rows.num_rows, plan.rows.num_rows)

    report("state", 0, 1)
    try:
        state.save(PushState(push_id, fp, _next_state(valid, previous, seen, key, mode)))
    except OSError as exc:  # committed: the marker tells the next push its state is stale
        raise PushError(
            f"push {push_id} committed, but its state could not be saved ({exc}); "
            "the next push compares every row (a full push)"
        ) from exc
    report("state", 1, 1)
    return PushResult(
        **result,
        inserted=applied.inserted,
        updated=applied.updated,
        deleted=applied.deleted,
        unchanged=applied.unchanged + plan.unchanged,
        skipped=applied.skipped,
        push_id=push_id,
        seconds=time.monotonic() - started,
    )


def duplicated(kh: np.ndarray) -> np.ndarray | None:
    """Mask of rows whose key hash occurs more than once, or None when every key is unique
    (a plain sort finds that out; only the duplicated values are then looked up)."""
    ordered = np.sort(kh)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated) == 0:
        return None
    return np.isin(kh, repeated)


def _trusted_state(
    dest: Destination, state: StateFile, job: str, fp: str, *, full: bool, creating: bool
) -> tuple[PushState | None, str, int]:
    """The last push's state if it can be trusted (else None), why, and the destination's row count."""
    if full:
        return None, "full push requested", -1
    if creating:
        return None, "the destination table is new", -1
    previous = state.load()
    if previous is None:
        return None, "first push (no state of a previous push)", -1
    if previous.fingerprint != fp:
        return None, "mapping, key, mode or column types changed since the last push", -1
    rows = -1
    if dest.keeps_marker:
        marker, rows = dest.current(job)
        if marker is None or marker.push_id != previous.push_id:
            return None, "the destination's last push is not the one the state file knows", -1
        if rows < marker.row_count:
            return (
                None,
                f"the destination lost rows since the last push ({rows} < {marker.row_count}: truncated?)",
                -1,
            )
    return previous, f"diff against push {previous.push_id}", rows


def _plan(
    valid: pa.Table,
    previous: PushState | None,
    seen: pa.Array,
    source_keys: pa.Table,
    key: list[str],
    mode: str,
    reason: str,
    creating: bool,
) -> Plan:
    data_cols = [c for c in valid.column_names if c not in (KEY_HASH, ROW_HASH)]
    if previous is None:  # full push; a mirror keeps every source key, rejected rows' included
        return Plan(
            mode,
            tuple(key),
            valid.select(data_cols),
            True,
            reason,
            create_table=creating,
            keep_keys=source_keys if mode == "mirror" else None,
        )
    old_kh = previous.table.column(KEY_HASH).to_numpy()
    old_rh = previous.table.column(ROW_HASH).to_numpy()
    at = match(valid.column(KEY_HASH).to_numpy(), old_kh)
    is_new = at < 0
    changed = ~is_new & (valid.column(ROW_HASH).to_numpy() != old_rh[np.maximum(at, 0)])
    write = is_new if mode == "insert" else is_new | changed
    rows = valid.select(data_cols).take(pa.array(np.flatnonzero(write)))
    new_n, changed_n = int(is_new.sum()), 0 if mode == "insert" else int(changed.sum())
    deletes = None
    if mode == "mirror":
        gone = match(old_kh, seen.to_numpy()) < 0
        deletes = previous.table.filter(pa.array(gone)).select(key)
    return Plan(
        mode,
        tuple(key),
        rows,
        False,
        reason,
        new_keys=new_n,
        changed_keys=changed_n,
        unchanged=valid.num_rows - rows.num_rows,
        deletes=deletes,
    )


def _next_state(
    valid: pa.Table, previous: PushState | None, seen: pa.Array, key: list[str], mode: str
) -> pa.Table:
    """What the destination holds after this push, as (key columns, key hash, content hash).

    Keys absent from the source stay (only mirror deletes them). In update mode a source key
    the destination did not have is recorded too, so it is sent again only when its content
    changes; push with full=True after such keys were added to the destination by others."""
    current = valid.select([*key, KEY_HASH, ROW_HASH])
    if previous is None:
        return current
    old_kh = previous.table.column(KEY_HASH).to_numpy()
    carry = match(old_kh, current.column(KEY_HASH).to_numpy()) < 0
    if mode == "mirror":  # keys that left the source were deleted; rejected ones stay as they were
        carry &= match(old_kh, seen.to_numpy()) >= 0
    if not carry.any():
        return current
    kept = previous.table.filter(pa.array(carry)).select(current.column_names)
    return pa.concat_tables([current, kept.cast(current.schema)])
