"""Partition keys and mappings: the shared definition of which partitions go together."""

from __future__ import annotations

import pytest

from coordinator.spec import partitions as P
from coordinator.spec.partitions import StaticPartitioning, WindowMapping

HOURLY = WindowMapping(window="hourly")


@pytest.mark.parametrize(
    ("p", "key", "ok"),
    [
        ("daily", "2024-02-29", True),
        ("daily", "2023-02-29", False),
        ("daily", "2024-2-1", False),
        ("daily", None, False),
        ("hourly", "2024-01-31T05", True),
        ("hourly", "2024-01-31T24", False),
        ("hourly", "2024-01-31", False),
        ("none", None, True),
        ("none", "x", False),
        (StaticPartitioning(static=("eu", "us")), "eu", True),
        (StaticPartitioning(static=("eu",)), "us", False),
    ],
)
def test_keys(p, key, ok):
    assert (P.key_problem(p, key) is None) is ok


def test_mappings_fit_or_say_why():
    assert P.mapping_problem("daily", "same", "daily") is None
    assert "partitioned like the job" in P.mapping_problem("hourly", "same", "daily")
    assert P.mapping_problem("hourly", HOURLY, "daily") is None
    assert "hourly input and a daily job" in P.mapping_problem("daily", HOURLY, "daily")
    assert P.mapping_problem("none", "latest", "daily") is None
    assert "unpartitioned input" in P.mapping_problem("daily", "latest", "daily")
    assert "static keys ['b']" in P.mapping_problem(
        StaticPartitioning(static=("a",)), "same", StaticPartitioning(static=("a", "b"))
    )


def test_required_and_inverse_agree():
    hours = P.required("hourly", HOURLY, "2024-01-02")
    assert len(hours) == 24 and hours[0] == "2024-01-02T00" and hours[-1] == "2024-01-02T23"
    for h in hours:
        assert P.job_keys_for("hourly", HOURLY, "daily", h) == ("2024-01-02",)
    assert P.required("daily", "same", "2024-01-02") == ("2024-01-02",)
    assert P.required("none", "latest", "2024-01-02") == (None,)
    assert P.job_keys_for("none", "latest", "daily", None) == ()  # gates, does not trigger
    assert P.job_keys_for("none", "latest", "none", None) == (None,)


def test_key_range():
    assert P.key_range("daily", "2024-02-27", "2024-03-01") == [
        "2024-02-27",
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    ]
    assert P.key_range("hourly", "2024-01-01T22", "2024-01-02T01") == [
        "2024-01-01T22",
        "2024-01-01T23",
        "2024-01-02T00",
        "2024-01-02T01",
    ]
    assert P.key_range(StaticPartitioning(static=("a", "b", "c")), "b", "c") == ["b", "c"]
    with pytest.raises(ValueError):
        P.key_range("daily", "2024-01-01", "nope")


@pytest.mark.parametrize(
    ("static", "said"),
    [
        ("[]", "at least 1 item"),  # a dataset with no key could never be complete
        ("[eu, us, eu]", "static keys are distinct: 'eu' given twice"),
        ('[eu, ""]', "String should have at least 1 character"),
        ('[eu, "a\\0b"]', "a NUL character is not allowed"),
        (f"[eu, {'k' * 201}]", "String should have at most 200 characters"),  # the store's partition_key
    ],
)
def test_static_keys_are_some_distinct_and_storable(static: str, said: str) -> None:
    from coordinator.errors import SpecError
    from coordinator.spec import parse_spec

    with pytest.raises(SpecError) as info:
        parse_spec(f"datasets:\n  a:\n    partitioning: {{static: {static}}}\n", "p.yaml", env={})
    found = [str(p) for p in info.value.problems]
    assert len(found) == 1 and found[0].startswith("p.yaml:3: datasets.a.partitioning.static: "), found
    assert said in found[0], found
