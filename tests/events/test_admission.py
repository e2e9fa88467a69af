"""Admission against the spec (coordinator/admission.py): every kind of refused event, and those let in."""

from __future__ import annotations

import pytest

from coordinator.admission import BAD_PARTITION, UNKNOWN_DATASET, Admission, admission_problem, admit
from coordinator.errors import EventError
from coordinator.events import CompletionEvent
from coordinator.spec.models import DatasetSpec, JobSpec, PipelineSpec

SPEC = PipelineSpec(
    datasets={
        "raw.daily": DatasetSpec(partitioning="daily"),
        "raw.hourly": DatasetSpec(partitioning="hourly"),
        "raw.static": DatasetSpec(partitioning={"static": ["eu", "us"]}),
        "raw.whole": DatasetSpec(),
    },
    jobs={"build": JobSpec(kind="command", inputs=[{"dataset": "raw.daily"}], outputs=["out.daily"],
                           settings={"command": ["true"]})},
)

REFUSED = [
    ("nobody.declares.this", "2025-01-01", UNKNOWN_DATASET),
    ("raw.daily", "2025-13-45", BAD_PARTITION),
    ("raw.daily", "2025-02-30", BAD_PARTITION),
    ("raw.daily", "yesterday", BAD_PARTITION),
    ("raw.daily", None, BAD_PARTITION),
    ("raw.daily", "2025-01-01T05", BAD_PARTITION),
    ("raw.daily", "2025-1-1", BAD_PARTITION),
    ("raw.daily", " 2025-01-01", BAD_PARTITION),
    ("raw.hourly", "2025-01-01", BAD_PARTITION),
    ("raw.hourly", "2025-01-01T24", BAD_PARTITION),
    ("raw.hourly", None, BAD_PARTITION),
    ("raw.static", "fr", BAD_PARTITION),
    ("raw.static", None, BAD_PARTITION),
    ("raw.whole", "2025-01-01", BAD_PARTITION),
    ("out.daily", "2025-13-01", BAD_PARTITION),  # a job's output takes its job's partitioning
]
ADMITTED = [
    ("raw.daily", "2025-01-01"), ("raw.hourly", "2025-01-01T23"), ("raw.static", "eu"),
    ("raw.whole", None), ("out.daily", "2025-01-01"),
]


@pytest.mark.parametrize(("dataset", "partition", "reason"), REFUSED)
def test_refused_with_its_reason(dataset: str, partition: str | None, reason: str) -> None:
    problem = admission_problem(SPEC, dataset, partition)
    assert problem is not None and problem.reason == reason
    assert dataset in problem.detail
    with pytest.raises(EventError) as raised:
        admit(SPEC, CompletionEvent(dataset=dataset, partition=partition))
    assert raised.value.reason == reason


@pytest.mark.parametrize(("dataset", "partition"), ADMITTED)
def test_admitted(dataset: str, partition: str | None) -> None:
    assert admission_problem(SPEC, dataset, partition) is None


def test_unknown_datasets_accepted_when_the_spec_says_so() -> None:
    shared = SPEC.model_copy(update={"accept_unknown_datasets": True})
    assert admission_problem(shared, "other.pipeline.table", "anything") is None
    assert admission_problem(shared, "raw.daily", "yesterday").reason == BAD_PARTITION


def test_cached_answers_are_the_same() -> None:
    admission = Admission(SPEC)
    for dataset, partition, reason in REFUSED * 2:
        assert admission.problem(CompletionEvent(dataset=dataset, partition=partition)).reason == reason
    for dataset, partition in ADMITTED * 2:
        assert admission.problem(CompletionEvent(dataset=dataset, partition=partition)) is None


def test_the_spec_file_key() -> None:
    from coordinator.spec.loader import parse_spec

    spec = parse_spec("accept_unknown_datasets: true\ndatasets:\n  raw.a: {partitioning: daily}\n")
    assert spec.accept_unknown_datasets is True
    assert parse_spec("datasets:\n  raw.a: {partitioning: daily}\n").accept_unknown_datasets is False


def test_answers_kept_per_partitioning_and_key_not_per_pair() -> None:
    """Every dataset of one partitioning shares the answer for a key: a bus of many datasets
    and ever new days keeps one entry a day, not one an event."""
    admission = Admission(daily_spec(20))
    for day in range(1, 11):
        for i in range(20):
            event = CompletionEvent(dataset=f"d.{i}", partition=f"2024-01-{day:02d}")
            assert admission.problem(event) is None
    assert len(admission._keys) == 10
    refused = admission.problem(CompletionEvent(dataset="d.3", partition="2024-13-01"))
    assert refused.reason == BAD_PARTITION and refused.detail.startswith("d.3: ")


def daily_spec(n: int) -> PipelineSpec:
    return PipelineSpec(datasets={f"d.{i}": DatasetSpec(partitioning="daily") for i in range(n)})
