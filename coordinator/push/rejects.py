"""Rejected rows: which rows are not pushed and why; written to a JSON-lines rejects file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Rejects:
    """Collects (mask, reason) pairs over one table; the first reason of a row wins."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self._reason = np.full(table.num_rows, -1, dtype=np.int32)
        self._reasons: list[str] = []

    def add(self, reason: str, mask: pa.Array | pa.ChunkedArray | np.ndarray) -> None:
        if not isinstance(mask, np.ndarray):
            mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
        hit = mask & (self._reason < 0)
        if hit.any():
            self._reasons.append(reason)
            self._reason[hit] = len(self._reasons) - 1

    @property
    def mask(self) -> np.ndarray:
        return self._reason >= 0

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    def counts(self) -> dict[str, int]:
        c = Counter(self._reason[self.mask].tolist())
        return {self._reasons[i]: n for i, n in sorted(c.items())}

    def write(self, path: Path) -> None:
        """One JSON object per rejected row: {"reason": ..., "row": {...}}."""
        idx = np.flatnonzero(self.mask)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = self.table.take(pa.array(idx)).to_pylist()
        with open(path, "w", encoding="utf-8") as f:
            for i, row in zip(idx, rows, strict=True):
                f.write(
                    json.dumps({"reason": self._reasons[self._reason[i]], "row": row}, default=str) + "\n"
                )
