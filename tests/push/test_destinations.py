"""The push contract, run against every database destination (SQLite, PostgreSQL, MariaDB)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from coordinator.errors import DestinationMismatch, PushError, TooManyRejects
from coordinator.push import DestinationSettings, push
from tests.push.conftest import Backend

N = 2_000


def scores(n: int = N, bump: set[int] | frozenset[int] = frozenset()) -> pa.Table:
    ids = list(range(n))
    return pa.table(
        {
            "user_id": ids,
            "score": [i / 8 + (100 if i in bump else 0) for i in ids],
            "segment": [f"s{i % 7}" for i in ids],
        }
    )


def create_scores(
    b: Backend, table: str, score_type: str = "double precision", key_type: str = "bigint"
) -> None:
    score_type = "double" if b.name == "mysql" and score_type == "double precision" else score_type
    b.exec(
        f"CREATE TABLE {b.q(table)} ({b.q('user_id')} {key_type} NOT NULL PRIMARY KEY, "
        f"{b.q('score')} {score_type}, {b.q('segment')} varchar(10))"
    )


def run(b: Backend, table: str, data: pa.Table, state_dir: Path, **kw):
    kw.setdefault("key", ["user_id"])
    return push(data, DestinationSettings(url=b.url, table=table), job="job1", state_dir=state_dir, **kw)


def test_modes(backend: Backend, table_name: str, state_dir: Path) -> None:
    create_scores(backend, table_name)
    first = run(backend, table_name, scores(10), state_dir, mode="insert")
    assert (first.inserted, first.updated, first.full) == (10, 0, True)

    # insert never overwrites: changed rows of existing keys are skipped, new keys inserted
    data = pa.concat_tables([scores(10, bump={1}), scores(12).slice(10)])
    r = run(backend, table_name, data, state_dir, mode="insert", full=True)
    assert (r.inserted, r.updated, r.skipped) == (2, 0, 10)
    assert backend.rows(table_name, "user_id")[1][1] == 1 / 8

    # update touches existing keys only
    data = pa.concat_tables([scores(12, bump={1}), scores(13).slice(12)])
    r = run(backend, table_name, data, state_dir, mode="update")
    assert (r.inserted, r.updated, r.skipped) == (0, 1, 1)
    assert len(backend.rows(table_name, "user_id")) == 12

    # upsert inserts and updates
    r = run(backend, table_name, scores(13, bump={1, 2}), state_dir, mode="upsert")
    assert (r.inserted, r.updated, r.deleted) == (1, 1, 0)

    # mirror also deletes keys that left the source
    r = run(backend, table_name, scores(13, bump={1, 2}).slice(0, 9), state_dir, mode="mirror")
    assert (r.inserted, r.updated, r.deleted) == (0, 0, 4)
    assert [row[0] for row in backend.rows(table_name, "user_id")] == list(range(9))
    r = run(backend, table_name, scores(9, bump={1, 2, 3}).slice(1), state_dir, mode="mirror")
    assert (r.inserted, r.updated, r.deleted, r.full) == (0, 1, 1, False)
    assert backend.rows(table_name, "user_id") == [
        (i, i / 8 + (100 if i in {1, 2, 3} else 0), f"s{i % 7}") for i in range(1, 9)
    ]


def test_diff_writes_exactly_the_changed_rows(backend: Backend, table_name: str, state_dir: Path) -> None:
    create_scores(backend, table_name)
    backend.count_touches(table_name)
    assert run(backend, table_name, scores(), state_dir).inserted == N
    assert backend.touched(table_name) == N

    again = run(backend, table_name, scores(), state_dir)  # no change: nothing written
    assert (again.inserted, again.updated, again.unchanged, again.full) == (0, 0, N, False)
    assert backend.touched(table_name) == N

    changed = set(range(0, N, 100))  # 1 % of the rows
    r = run(backend, table_name, scores(bump=changed), state_dir)
    assert (r.updated, r.inserted, r.unchanged, r.full) == (len(changed), 0, N - len(changed), False)
    assert backend.touched(table_name) == N + len(changed)
    assert backend.rows(table_name, "user_id")[100][1] == 100 / 8 + 100


def test_failure_mid_push_leaves_destination_unchanged(
    backend: Backend, table_name: str, state_dir: Path
) -> None:
    create_scores(backend, table_name)
    run(backend, table_name, scores(), state_dir)
    before = backend.rows(table_name, "user_id")
    backend.fail_on_key(table_name, "user_id", 1500)
    changed = {10, 700, 1500, 1900}
    with pytest.raises(PushError, match="injected failure"):
        run(backend, table_name, pa.concat_tables([scores(bump=changed), scores(N + 5).slice(N)]), state_dir)
    assert backend.rows(table_name, "user_id") == before

    backend.drop_failure(table_name)  # fixed: the next push is complete
    r = run(backend, table_name, pa.concat_tables([scores(bump=changed), scores(N + 5).slice(N)]), state_dir)
    assert (r.inserted, r.updated, r.full) == (5, len(changed), False)
    assert backend.rows(table_name, "user_id") == [
        (i, i / 8 + (100 if i in changed else 0), f"s{i % 7}") for i in range(N + 5)
    ]


def test_full_push_fallbacks(backend: Backend, table_name: str, state_dir: Path) -> None:
    create_scores(backend, table_name)
    run(backend, table_name, scores(100), state_dir)
    saved = state_dir.parent / "saved_state"
    shutil.copytree(state_dir, saved)

    backend.exec(f"DELETE FROM {backend.q(table_name)}")  # truncated behind our back
    r = run(backend, table_name, scores(100), state_dir)
    assert r.full and "lost rows" in r.reason and r.inserted == 100

    # a push committed but its state file was not saved (crash): the marker tells
    shutil.rmtree(state_dir)
    shutil.copytree(saved, state_dir)
    r = run(backend, table_name, scores(100, bump={5}), state_dir)
    assert r.full and "not the one" in r.reason and (r.updated, r.unchanged) == (1, 99)

    r = run(
        backend,
        table_name,
        scores(100, bump={5}),
        state_dir,
        columns={"user_id": "user_id", "score": "score"},
    )
    assert r.full and "changed" in r.reason and (r.updated, r.unchanged) == (0, 100)


def test_type_mismatch_writes_nothing(backend: Backend, table_name: str, state_dir: Path) -> None:
    backend.exec(
        f"CREATE TABLE {backend.q(table_name)} ({backend.q('user_id')} bigint NOT NULL PRIMARY KEY, "
        f"{backend.q('score')} varchar(20), {backend.q('other')} integer NOT NULL)"
    )
    with pytest.raises(DestinationMismatch) as caught:
        run(backend, table_name, scores(10), state_dir)
    problems = " | ".join(caught.value.problems)
    assert "'segment' is missing" in problems and "'score'" in problems and "'other'" in problems
    assert len(caught.value.problems) == 3
    assert backend.rows(table_name, "user_id") == []

    with pytest.raises(DestinationMismatch, match="does not exist"):
        run(backend, table_name + "_missing", scores(10), state_dir)


def test_rejects_are_counted_and_written(
    backend: Backend, table_name: str, state_dir: Path, tmp_path: Path
) -> None:
    create_scores(backend, table_name)
    data = pa.table(
        {
            "user_id": [1, 2, 2, None, 5, 6],
            "score": [1.0, 2.0, 3.0, 4.0, float("nan"), 6.0],  # SQLite, MariaDB: no NaN
            "segment": ["a", "b", "c", "d", "much too long", "f"],  # PostgreSQL: too long
        }
    )
    rejects = tmp_path / "rejects.jsonl"
    with pytest.raises(TooManyRejects):
        run(backend, table_name, data, state_dir, rejects_path=rejects, max_rejected_fraction=0.5)
    assert backend.rows(table_name, "user_id") == []

    r = run(backend, table_name, data, state_dir, rejects_path=rejects, max_rejected_fraction=0.7)
    assert (r.inserted, r.rejected) == (2, 4)
    reasons = {k.split(" (")[0]: v for k, v in r.reject_reasons.items()}
    nan_fails = backend.name in ("sqlite", "mysql")
    value_reason = "NaN or infinity in score" if nan_fails else "value too long for segment"
    assert reasons == {"null key user_id": 1, "duplicate key in the source": 2, value_reason: 1}
    lines = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert sorted(x["row"]["user_id"] or 0 for x in lines) == [0, 2, 2, 5]
    assert [r[0] for r in backend.rows(table_name, "user_id")] == [1, 6]


HOSTILE_TABLE = 'we"ird`; DROP TABLE x; --'
HOSTILE_COLS = ['us"er id', "sc`ore'; --", "seg)ment"]


def test_hostile_identifiers(backend: Backend, state_dir: Path) -> None:
    mapping = dict(zip(["user_id", "score", "segment"], HOSTILE_COLS, strict=True))
    r = run(
        backend,
        HOSTILE_TABLE,
        scores(50),
        state_dir,
        columns=mapping,
        key=["user_id"],
        create_table=True,
        mode="mirror",
    )
    assert r.inserted == 50
    r = run(
        backend,
        HOSTILE_TABLE,
        scores(51, bump={3}),
        state_dir,
        columns=mapping,
        key=[HOSTILE_COLS[0]],
        mode="mirror",
    )
    assert (r.inserted, r.updated, r.full) == (1, 1, False)
    r = run(
        backend,
        HOSTILE_TABLE,
        scores(51, bump={3}).slice(1),
        state_dir,
        columns=mapping,
        key=["user_id"],
        mode="mirror",
    )
    assert r.deleted == 1
    rows = backend.rows(HOSTILE_TABLE, HOSTILE_COLS[0])
    assert rows[0] == (1, 1 / 8, "s1") and len(rows) == 50


def test_extra_destination_columns_and_another_order(
    backend: Backend, table_name: str, state_dir: Path
) -> None:
    backend.exec(
        f"CREATE TABLE {backend.q(table_name)} ({backend.q('note')} varchar(20) DEFAULT 'kept', "
        f"{backend.q('segment')} varchar(10), {backend.q('user_id')} bigint NOT NULL PRIMARY KEY, "
        f"{backend.q('score')} double precision)".replace(
            "double precision", "double" if backend.name == "mysql" else "double precision"
        )
    )
    assert run(backend, table_name, scores(3), state_dir).inserted == 3  # first push: straight in
    assert run(backend, table_name, scores(3, bump={1}), state_dir).updated == 1  # diff push: staged
    assert backend.rows(table_name, "user_id") == [
        ("kept", f"s{i}", i, i / 8 + (100 if i == 1 else 0)) for i in range(3)
    ]
