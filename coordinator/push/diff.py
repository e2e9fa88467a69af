"""Per-key content hashes and the state of the last successful push.

Hashing is vectorised: each column becomes one NumPy array (numbers and temporals by their
integer/float values, strings as an object array) and pandas' `hash_pandas_object` (SipHash
per value, combined per row in C) gives one uint64 per row. A null mask per nullable column is
hashed with the values, so a null never equals any value. Two hashes per row: the key hash (the
key columns) and the content hash (every pushed column).

The state file (Arrow IPC, one per job and destination) keeps the key values, key hash and
content hash of every row the destination holds after the last push, with the push id and the
mapping fingerprint in its metadata. It is written only after the destination committed, to a
temporary file renamed into place, so a crash never leaves half a state file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from coordinator.push.schema import arrow_family

KEY_HASH, ROW_HASH = "__coord_key_hash", "__coord_row_hash"
HASH_VERSION = 2


def _column_values(arr: pa.ChunkedArray) -> np.ndarray:
    fam = arrow_family(arr.type)
    if fam in ("int", "float", "bool"):
        filled = pc.fill_null(arr, False if fam == "bool" else 0)
        return filled.to_numpy()
    if fam in ("date", "timestamp", "time"):
        return pc.fill_null(arr.cast(pa.int64() if fam != "date" else pa.int32()), 0).to_numpy()
    if fam not in ("string", "bytes"):
        arr = arr.cast(pa.string())
    return _dictionary_hashes(arr)


def _dictionary_hashes(arr: pa.ChunkedArray) -> np.ndarray:
    """SipHash of each distinct value once (Arrow's dictionary encoding finds them), then one
    take per row: only distinct values ever become Python objects. Nulls get 0 here and are
    told apart by the null mask hashed beside the values."""
    parts = []
    for chunk in arr.chunks:
        encoded = pc.dictionary_encode(chunk)
        values = encoded.dictionary.to_numpy(zero_copy_only=False)
        if len(values) == 0:
            parts.append(np.zeros(len(chunk), dtype=np.uint64))
            continue
        hashed = pd.util.hash_array(values, categorize=False)  # values are distinct already
        parts.append(hashed[pc.fill_null(encoded.indices, 0).to_numpy()])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def row_hashes(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """One uint64 per row over `columns` (order matters)."""
    if table.num_rows == 0:
        return pa.array([], pa.uint64())
    frame = {}
    for i, name in enumerate(columns):
        arr = table.column(name)
        frame[f"v{i}"] = _column_values(arr)
        if arr.null_count:
            frame[f"n{i}"] = pc.is_null(arr).to_numpy(zero_copy_only=False)
    hashed = pd.util.hash_pandas_object(pd.DataFrame(frame, copy=False), index=False, categorize=False)
    return pa.array(hashed.to_numpy(), pa.uint64())


def fingerprint(mapping: Sequence[tuple[str, str]], key: Sequence[str], mode: str, schema: pa.Schema) -> str:
    """Changes whenever what the saved hashes mean changes: mapping, key, mode or source types.

    (A destination altered in place is not seen here; push with `full=True` after an ALTER.)"""
    doc = {
        "v": HASH_VERSION,
        "map": list(mapping),
        "key": list(key),
        "mode": mode,
        "types": [[f.name, str(f.type)] for f in schema],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def match(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """For each of `keys`, its index in `among` (both uint64 key hashes), or -1.

    A source usually comes in the same order as last time, so rows are first matched by
    position (one vectorised comparison); only the rest are matched by sorting both sides and
    a binary search of sorted needles (cache-friendly; far cheaper than a join over the table).
    """
    out = np.full(len(keys), -1, dtype=np.int64)
    m = min(len(keys), len(among))
    same = np.flatnonzero(keys[:m] == among[:m])
    out[same] = same
    if len(same) == len(keys) or len(same) == len(among):
        return out
    rest_k = np.flatnonzero(out < 0)
    used = np.zeros(len(among), dtype=bool)
    used[same] = True
    rest_a = np.flatnonzero(~used)
    oa = np.argsort(among[rest_a])
    sa = among[rest_a][oa]
    ok = np.argsort(keys[rest_k])
    sk = keys[rest_k][ok]
    pos = np.minimum(np.searchsorted(sa, sk), len(sa) - 1)
    hit = sa[pos] == sk
    out[rest_k[ok[hit]]] = rest_a[oa[pos[hit]]]
    return out


@dataclass(frozen=True)
class PushState:
    push_id: str
    fingerprint: str
    table: pa.Table  # key columns + KEY_HASH + ROW_HASH


class StateFile:
    """The last successful push of one (job, destination), in an Arrow IPC file."""

    def __init__(self, folder: Path, job: str, destination_id: str) -> None:
        digest = hashlib.sha256(f"{job}\0{destination_id}".encode()).hexdigest()[:24]
        self.path = Path(folder) / f"{digest}.arrow"

    def load(self) -> PushState | None:
        if not self.path.exists():
            return None
        try:
            table = feather.read_table(self.path, memory_map=False)
        except (OSError, pa.ArrowException):
            return None  # an unreadable state only costs a full push
        meta = table.schema.metadata or {}
        return PushState(
            meta.get(b"push_id", b"").decode(),
            meta.get(b"fingerprint", b"").decode(),
            table.replace_schema_metadata(None),
        )

    def save(self, state: PushState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        table = state.table.replace_schema_metadata(
            {"push_id": state.push_id, "fingerprint": state.fingerprint}
        )
        tmp = self.path.with_suffix(".tmp")
        feather.write_feather(table, tmp, compression="uncompressed")  # hashes do not compress
        os.replace(tmp, self.path)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
