"""What a push is about to do, decided before anything is written; also the dry-run rendering."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Plan:
    """`rows` (destination column names) are written per `mode`; in mirror mode `deletes` holds
    the key values to delete (diff push) and `keep_keys` every source key (full push: the
    destination deletes every key not in it)."""

    mode: str
    key: tuple[str, ...]
    rows: pa.Table
    full: bool
    reason: str  # why a full push, or "diff against push <id>"
    new_keys: int | None = None  # known in a diff push
    changed_keys: int | None = None
    unchanged: int = 0  # rows the diff skipped
    deletes: pa.Table | None = None
    keep_keys: pa.Table | None = None
    create_table: bool = False

    @property
    def columns(self) -> list[str]:
        return self.rows.column_names

    @property
    def is_empty(self) -> bool:
        return (
            self.rows.num_rows == 0
            and not (self.deletes is not None and self.deletes.num_rows)
            and self.keep_keys is None
            and not self.create_table
        )


def render(plan: Plan, sample: int = 5) -> list[str]:
    """Human lines for --dry-run: the counts and a few rows of each kind."""
    lines = [f"{'full' if plan.full else 'diff'} push ({plan.reason}), mode {plan.mode}"]
    if plan.create_table:
        lines.append("would create the destination table")
    if plan.full:
        lines.append(
            f"would {_verb(plan.mode)} {plan.rows.num_rows} rows (rows equal to the destination's "
            "are left untouched)"
        )
    else:
        lines.append(
            f"would insert {plan.new_keys} rows, update {plan.changed_keys} rows; {plan.unchanged} unchanged"
        )
    for row in plan.rows.slice(0, sample).to_pylist():
        lines.append(f"  {_verb(plan.mode)} {row}")
    if plan.deletes is not None:
        lines.append(f"would delete {plan.deletes.num_rows} rows")
        lines.extend(f"  delete {row}" for row in plan.deletes.slice(0, sample).to_pylist())
    if plan.keep_keys is not None:
        lines.append(
            f"would delete every destination row whose key is not among {plan.keep_keys.num_rows} source keys"
        )
    return lines


def _verb(mode: str) -> str:
    return {"insert": "insert", "update": "update"}.get(mode, "upsert")
