"""Readiness is pure: exhaustive cases, and properties over permuted and duplicated events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.events import Column, CompletionEvent, Status
from coordinator.readiness import Snapshot, check_contract, evaluate, needed_for_events, step
from coordinator.spec import parse_spec

T0 = datetime(2024, 1, 1, tzinfo=UTC)

SPEC = parse_spec("""
datasets:
  raw.a: {partitioning: daily}
  raw.b: {partitioning: daily, columns: [{name: id, type: long}]}
  raw.c: {partitioning: daily}
  raw.h: {partitioning: hourly}
  model: {partitioning: none}
jobs:
  join:   {kind: command, inputs: [raw.a, raw.b], outputs: [mid], settings: {command: x}, rerun_on: all_new}
  anyjob: {kind: command, inputs: [mid, raw.c], outputs: [side], trigger: any, settings: {command: x}}
  window: {kind: command, inputs: [{dataset: raw.h, mapping: {window: hourly}}], outputs: [daily_h],
           settings: {command: x}}
  scored: {kind: command, inputs: [raw.a, {dataset: model, mapping: latest}], outputs: [scores],
           settings: {command: x}}
  strict: {kind: command, inputs: [raw.c], outputs: [strict_out], settings: {command: x},
           contract: {raw.c: [{name: id, type: long}, {name: ts, type: timestamp}]}}
""")


def ev(
    dataset: str,
    partition: str | None,
    n: int = 0,
    status: Status = Status.SUCCEEDED,
    columns: list[tuple[str, str]] | None = None,
    eid: str | None = None,
) -> CompletionEvent:
    return CompletionEvent(
        event_id=eid or f"{dataset}/{partition}/{n}",
        dataset=dataset,
        partition=partition,
        status=status,
        produced_at=T0 + timedelta(seconds=n),
        columns=None if columns is None else tuple(Column(name=a, type=b) for a, b in columns),
    )


def runs(events, snap: Snapshot | None = None):
    return [
        (c.job, c.partition, tuple(v.event_id for v in c.inputs))
        for c in step(SPEC, snap or Snapshot(), events)
    ]


def test_join_waits_for_every_input_of_the_same_partition():
    snap = Snapshot()
    assert runs([ev("raw.a", "2024-01-01"), ev("raw.b", "2024-01-02")], snap) == []
    assert runs([ev("raw.b", "2024-01-01")], snap) == [
        ("join", "2024-01-01", ("raw.a/2024-01-01/0", "raw.b/2024-01-01/0"))
    ]


def test_duplicates_and_older_versions_change_nothing():
    snap = Snapshot()
    runs([ev("raw.a", "d", 5), ev("raw.b", "d", 5)], snap)
    assert runs([ev("raw.a", "d", 5), ev("raw.a", "d", 1)], snap) == []
    assert snap.latest[("raw.a", "d")].event_id == "raw.a/d/5"


def test_rerun_on_all_new_needs_every_input_new_and_any_needs_one():
    snap = Snapshot()
    assert len(runs([ev("raw.a", "d"), ev("raw.b", "d")], snap)) == 1
    assert runs([ev("raw.a", "d", 1)], snap) == []  # all: b is not new yet
    assert runs([ev("raw.b", "d", 1)], snap) == [("join", "d", ("raw.a/d/1", "raw.b/d/1"))]
    assert [r[0] for r in runs([ev("mid", "d"), ev("raw.c", "d")], snap)] == ["anyjob", "strict"]
    assert runs([ev("raw.c", "d", 1)], snap)[0] == ("anyjob", "d", ("mid/d/0", "raw.c/d/1"))


def test_failed_events_hold_downstream():
    assert runs([ev("raw.a", "d"), ev("raw.b", "d", status=Status.FAILED)]) == []


def test_hourly_window_needs_all_24_hours():
    hours = [ev("raw.h", f"2024-01-01T{h:02d}") for h in range(24)]
    assert runs(hours[:23]) == []
    out = runs(hours[5:] + hours[:5])
    assert len(out) == 1 and out[0][:2] == ("window", "2024-01-01") and len(out[0][2]) == 24


def test_latest_input_gates_but_does_not_trigger():
    snap = Snapshot()
    assert runs([ev("raw.a", "d"), ev("raw.b", "x")], snap) == []  # model missing
    # the model makes ready the partitions that waited only for it
    assert runs([ev("model", None)], snap) == [("scored", "d", ("model/None/0", "raw.a/d/0"))]
    assert runs([ev("model", None, 1)], snap) == []  # ... but re-runs nothing
    assert runs([ev("raw.a", "d", 2)], snap) == [("scored", "d", ("model/None/1", "raw.a/d/2"))]
    assert evaluate(SPEC, snap, "scored", "d") is None
    assert evaluate(SPEC, snap, "scored", "d", force=True) is not None


def test_contract_violation_names_dataset_partition_and_columns():
    [cand] = step(SPEC, Snapshot(), [ev("raw.c", "d", columns=[("id", "string"), ("x", "int")])])
    v = cand.violation
    assert v is not None and (v.dataset, v.partition, v.columns) == ("raw.c", "d", ["id", "ts"])
    assert "column id is string" in str(v) and "missing column ts" in str(v)
    [ok] = step(
        SPEC, Snapshot(), [ev("raw.c", "d", columns=[("ID", "x"), ("id", "LONG"), ("ts", "timestamp")])]
    )
    assert ok.violation is None
    # the dataset's own column contract applies to every consumer
    bad_b = step(SPEC, Snapshot(), [ev("raw.a", "d"), ev("raw.b", "d", columns=[("id", "int")])])
    assert bad_b[0].violation.columns == ["id"]
    assert check_contract(SPEC, "join", bad_b[0].inputs) is not None


def test_blocked_candidates_do_not_count_as_consumed():
    snap = Snapshot()
    step(SPEC, snap, [ev("raw.a", "d"), ev("raw.b", "d", columns=[("id", "int")])])
    fixed = runs([ev("raw.b", "d", 1, columns=[("id", "long")])], snap)
    assert fixed == [("join", "d", ("raw.a/d/0", "raw.b/d/1"))]  # a need not be new again


def test_needed_for_events_covers_what_step_reads():
    parts, jobs = needed_for_events(SPEC, [ev("raw.h", "2024-01-01T03")])
    assert ("window", "2024-01-01") in jobs and ("raw.h", "2024-01-01T23") in parts


# ------------------------------------------------------------------ properties
DATASETS = ["raw.a", "raw.b", "raw.c", "mid", "model"]
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]
ONE_VERSION = [
    ev(d, None if d == "model" else p, i)
    for i, (d, p) in enumerate((d, p) for d in DATASETS for p in DAYS)
    if d != "model" or p == DAYS[0]
]


def as_set(events, batches: list[int]):
    snap = Snapshot()
    out, start = [], 0
    for size in batches + [len(events)]:
        out += runs(events[start : start + size], snap)
        start += size
    return sorted(out)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(ONE_VERSION), min_size=1, max_size=40),
    st.randoms(use_true_random=False),
    st.lists(st.integers(1, 6), max_size=5),
)
def test_any_permutation_and_duplication_yields_the_same_runs(events, rnd, batches):
    shuffled = list(events) + rnd.sample(events, k=len(events) // 2)  # duplicates
    rnd.shuffle(shuffled)
    distinct = {e.event_id: e for e in events}
    expected = as_set(sorted(distinct.values(), key=lambda e: e.event_id), [])
    got = as_set(shuffled, batches)
    assert got == expected
    assert len(got) == len(set(got))  # never the same run twice


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["mid", "raw.c"]), st.integers(0, 5)), min_size=1, max_size=20),
    st.randoms(use_true_random=False),
)
def test_any_trigger_last_run_consumes_the_newest_versions(versions, rnd):
    events = [ev(d, "d", n) for d, n in versions]
    rnd.shuffle(events)
    out = [r for r in runs(events) if r[0] == "anyjob"]
    newest = {d: max(n for dd, n in versions if dd == d) for d, _ in versions}
    if set(newest) == {"mid", "raw.c"}:
        assert out and out[-1] == ("anyjob", "d", (f"mid/d/{newest['mid']}", f"raw.c/d/{newest['raw.c']}"))
    else:
        assert out == []


# ------------------------------------------------------------------ on_change: rerun_latest
RERUN = parse_spec("""
datasets:
  raw.a: {partitioning: daily}
  raw.b: {partitioning: daily}
  model: {partitioning: none}
jobs:
  score: {kind: command, inputs: [raw.a, raw.b, {dataset: model, mapping: latest, on_change: rerun_latest}],
          outputs: [scores], settings: {command: x}, rerun_on: all_new}
  push:  {kind: command, inputs: [scores], outputs: [pushed], settings: {command: x}}
""")


def rerun_runs(events, snap: Snapshot):
    return [(c.job, c.partition, tuple(v.event_id for v in c.inputs)) for c in step(RERUN, snap, events)]


def test_rerun_latest_rescores_only_the_newest_partition_that_ran():
    snap = Snapshot()
    assert rerun_runs([ev("model", None, 0)], snap) == []
    first = rerun_runs([ev("raw.a", d, 1) for d in DAYS] + [ev("raw.b", d, 1) for d in DAYS[:2]], snap)
    assert [(j, p) for j, p, _ in first] == [("score", DAYS[0]), ("score", DAYS[1])]
    # DAYS[2] lacks raw.b: the newest partition that ran is DAYS[1], re-run with the new model
    assert rerun_runs([ev("model", None, 5)], snap) == [
        ("score", DAYS[1], ("model/None/5", f"raw.a/{DAYS[1]}/1", f"raw.b/{DAYS[1]}/1"))
    ]
    # replayed, duplicated or older model versions re-run nothing
    assert rerun_runs([ev("model", None, 5), ev("model", None, 3)], snap) == []
    # downstream follows through the output event, as for any new version
    assert rerun_runs([ev("scores", DAYS[1], 6)], snap) == [("push", DAYS[1], (f"scores/{DAYS[1]}/6",))]
    # the re-run rule still holds for the others: a new raw.a alone re-runs nothing (all_new)
    assert rerun_runs([ev("raw.a", DAYS[0], 7)], snap) == []
    # once DAYS[2] ran, it is the one a later model re-scores
    assert [p for _, p, _ in rerun_runs([ev("raw.b", DAYS[2], 8)], snap)] == [DAYS[2]]
    assert [(j, p) for j, p, _ in rerun_runs([ev("model", None, 9)], snap)] == [("score", DAYS[2])]


def test_without_the_opt_in_a_latest_input_reruns_nothing():
    plain = parse_spec(
        "datasets: {a: {partitioning: daily}, m: {partitioning: none}}\n"
        "jobs: {j: {kind: command, inputs: [a, {dataset: m, mapping: latest}], outputs: [o],"
        " settings: {command: x}}}\n"
    )
    snap = Snapshot()
    assert len(step(plain, snap, [ev("m", None, 0), ev("a", "d", 1)])) == 1
    assert step(plain, snap, [ev("m", None, 2)]) == []


RERUN_EVENTS = [ev("model", None, n) for n in range(3)] + [
    ev(d, p, 10 + i) for i, (d, p) in enumerate((d, p) for d in ("raw.a", "raw.b") for p in DAYS)
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(RERUN_EVENTS), min_size=1, max_size=30),
    st.randoms(use_true_random=False),
    st.lists(st.integers(1, 6), max_size=5),
)
def test_rerun_latest_replays_and_duplicates_create_no_extra_runs(events, rnd, batches):
    snap, out, start = Snapshot(), [], 0
    for size in batches + [len(events)]:
        out += rerun_runs(events[start : start + size], snap)
        start += size
    assert len(out) == len(set(out))  # never the same run twice
    # the same events again — replayed whole, duplicated, in any order — create nothing
    again = list(events) + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(again)
    assert rerun_runs(again, snap) == []


# ------------------------------------------------------------------ re-runs on superseded data
STALE = parse_spec("""
datasets:
  raw.a: {partitioning: daily}
  raw.b: {partitioning: daily}
  raw.h: {partitioning: hourly}
jobs:
  join:    {kind: command, inputs: [raw.a, raw.b], outputs: [mid], trigger: all, settings: {command: x}}
  down:    {kind: command, inputs: [mid], outputs: [out], settings: {command: x}}
  waiting: {kind: command, inputs: [raw.a, raw.b], outputs: [mid2], rerun_on: all_new,
            settings: {command: x}}
  window:  {kind: command, inputs: [{dataset: raw.h, mapping: {window: hourly}}, raw.b], outputs: [w],
            settings: {command: x}}
""")


def stale_runs(events, snap: Snapshot, job: str | None = None):
    found = [(c.job, c.partition, tuple(v.event_id for v in c.inputs)) for c in step(STALE, snap, events)]
    return [r for r in found if job is None or r[0] == job]


def test_a_newer_version_after_a_stale_one_reruns_the_join_by_default():
    """The storm's case: a re-sync's stale version of raw.a arrives first, the newer one later,
    raw.b unchanged. `trigger: all` used to wait for raw.b forever; now the join re-runs."""
    snap = Snapshot()
    assert stale_runs([ev("raw.a", "d", 1, eid="a-stale"), ev("raw.b", "d", 1)], snap, "join") == [
        ("join", "d", ("a-stale", "raw.b/d/1"))
    ]
    assert stale_runs([ev("raw.a", "d", 5, eid="a-new")], snap, "join") == [
        ("join", "d", ("a-new", "raw.b/d/1"))
    ]
    # the join's new output re-runs what reads it, as for any new version
    assert stale_runs([ev("mid", "d", 6)], snap) == [("down", "d", ("mid/d/6",))]


def test_newer_means_produced_later_not_arrived_later():
    snap = Snapshot()
    stale_runs([ev("raw.a", "d", 5, eid="a-new"), ev("raw.b", "d", 1)], snap)
    # an older version arriving late (a replayed re-sync) is no version: nothing re-runs
    assert stale_runs([ev("raw.a", "d", 1, eid="a-stale")], snap) == []
    # the same produced_at: the event id breaks the tie, the same way on every instance
    assert stale_runs([ev("raw.a", "d", 5, eid="a-mew")], snap, "join") == []  # "a-mew" < "a-new"
    assert stale_runs([ev("raw.a", "d", 5, eid="a-nex")], snap, "join") == [
        ("join", "d", ("a-nex", "raw.b/d/1"))
    ]


def test_a_stale_and_a_newer_version_in_one_batch_make_one_run_on_the_newer():
    snap = Snapshot()
    batch = [ev("raw.a", "d", 1, eid="a-stale"), ev("raw.b", "d", 1), ev("raw.a", "d", 5, eid="a-new")]
    [cand] = [c for c in step(STALE, snap, batch) if c.job == "join"]
    assert [v.event_id for v in cand.inputs] == ["a-new", "raw.b/d/1"] and not cand.rerun
    # a later batch's candidate says the partition ran already (the store holds it back while that
    # run is open, so the newer never runs beside the older)
    [again] = [c for c in step(STALE, snap, [ev("raw.b", "d", 7)]) if c.job == "join"]
    assert again.rerun


def test_a_replacing_candidate_that_is_blocked_consumes_nothing():
    spec = parse_spec(
        "datasets: {a: {partitioning: daily, columns: [{name: id, type: long}]}, b: {partitioning: daily}}\n"
        "jobs: {j: {kind: command, inputs: [a, b], outputs: [o], settings: {command: x}}}\n"
    )
    snap = Snapshot()
    good, bad = [("id", "long")], [("id", "string")]
    [cand] = step(spec, snap, [ev("a", "d", 1, columns=good), ev("b", "d", 1), ev("a", "d", 2, columns=bad)])
    assert cand.violation is not None and ("j", "d") not in snap.consumed
    [fixed] = step(spec, snap, [ev("a", "d", 3, columns=good)])
    assert fixed.violation is None and [v.event_id for v in fixed.inputs] == ["a/d/3", "b/d/1"]


def test_rerun_on_all_new_waits_for_every_input():
    snap = Snapshot()
    assert len(stale_runs([ev("raw.a", "d", 1), ev("raw.b", "d", 1)], snap, "waiting")) == 1
    assert stale_runs([ev("raw.a", "d", 5)], snap, "waiting") == []  # built on raw.a v1; v5 exists
    assert stale_runs([ev("raw.b", "d", 6)], snap, "waiting") == [
        ("waiting", "d", ("raw.a/d/5", "raw.b/d/6"))
    ]


def test_one_new_hour_of_a_window_reruns_the_day():
    snap = Snapshot()
    hours = [ev("raw.h", f"2024-01-01T{h:02d}", 1) for h in range(24)]
    assert len(stale_runs([*hours, ev("raw.b", "2024-01-01", 1)], snap, "window")) == 1
    [again] = stale_runs([ev("raw.h", "2024-01-01T07", 9)], snap, "window")
    assert "raw.h/2024-01-01T07/9" in again[2] and "raw.h/2024-01-01T07/1" not in again[2]


def test_trigger_any_with_rerun_on_all_new_is_a_spec_error():
    import pytest

    from coordinator.errors import SpecError

    with pytest.raises(SpecError, match=r"<spec>:4: job .j.: trigger any and rerun_on all_new contradict"):
        parse_spec(
            "datasets: {a: {partitioning: daily}}\njobs:\n  j: {kind: command, inputs: [a], outputs: [o],"
            " trigger: any,\n      rerun_on: all_new, settings: {command: x}}\n"
        )


MULTI_VERSION = [ev(d, p, n) for d in ("raw.a", "raw.b", "mid") for p in DAYS[:2] for n in (1, 4, 7)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(MULTI_VERSION), min_size=1, max_size=40),
    st.randoms(use_true_random=False),
    st.lists(st.integers(1, 6), max_size=5),
)
def test_by_default_the_last_run_consumes_the_newest_versions_in_any_order(events, rnd, batches):
    """Whatever order versions arrive in, duplicated or not, in whatever batches: the last run of
    each join partition is built on the newest version of both inputs — never on superseded data."""
    shuffled = list(events) + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(shuffled)
    snap, out, start = Snapshot(), [], 0
    for size in batches + [len(shuffled)]:
        got = stale_runs(shuffled[start : start + size], snap, "join")
        assert len({(j, p) for j, p, _ in got}) == len(got)  # one run per job partition per batch
        out += got
        start += size
    assert len(out) == len(set(out))  # never the same run twice
    for day in DAYS[:2]:
        newest = {}
        for e in events:
            if e.partition == day and e.dataset in ("raw.a", "raw.b"):
                newest[e.dataset] = max(newest.get(e.dataset, -1), int(e.event_id.rsplit("/", 1)[1]))
        mine = [r for r in out if r[1] == day]
        if len(newest) == 2:
            assert mine[-1][2] == (f"raw.a/{day}/{newest['raw.a']}", f"raw.b/{day}/{newest['raw.b']}")
        else:
            assert mine == []
