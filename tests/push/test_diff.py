"""Hashing and key matching: pure, fast."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.push.diff import match, row_hashes


@settings(deadline=None, max_examples=200)  # no per-example deadline: CI machines are shared
@given(st.lists(st.integers(0, 50), unique=True), st.lists(st.integers(0, 50), unique=True), st.booleans())
def test_match_finds_each_key_where_it_is(keys: list[int], among: list[int], aligned: bool) -> None:
    if aligned:  # exercise the positional fast path with a mostly equal order
        among = keys[: len(keys) // 2] + [a for a in among if a not in keys[: len(keys) // 2]]
    k, a = np.array(keys, dtype=np.uint64), np.array(among, dtype=np.uint64)
    where = {v: i for i, v in enumerate(among)}
    assert match(k, a).tolist() == [where.get(v, -1) for v in keys]


def test_row_hash_tells_null_from_every_value_and_columns_apart() -> None:
    t = pa.table({"a": [1, None, 0, 1], "b": ["x", "", None, "x"]})
    h = row_hashes(t, ["a", "b"]).to_pylist()
    assert len(set(h[:3])) == 3 and h[0] == h[3]
    assert row_hashes(t, ["b", "a"]).to_pylist()[0] != h[0]
