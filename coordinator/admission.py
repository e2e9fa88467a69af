"""Admission: whether a decoded completion event belongs to the pipeline spec. Pure.

An event can be well formed and still wrong for this pipeline: a dataset no spec declares (a
typo in a producer, or a topic shared with other pipelines), or a partition key that does not
fit the dataset's partitioning. Recording such an event would launch runs for a partition that
cannot exist ("2025-13-45") or silently feed nothing; so intake dead-letters it, POST /events
answers 422 and `coord publish --spec` refuses it, all with the same reason from here:

- `unknown_dataset` — neither declared under `datasets:` nor the output of a job (nor the ticks
  of one of its schedules, `schedule.<name>`). Allowed when
  the spec says `accept_unknown_datasets: true` (a bus shared with other pipelines); such an
  event is then checked no further (its partitioning is not known).
- `bad_partition` — the key does not fit the partitioning: a valid date `YYYY-MM-DD` for daily,
  `YYYY-MM-DDTHH` for hourly, one of the keys for static, none for unpartitioned.

Events the coordinator emits itself are jobs' outputs, so they always pass.
"""

from __future__ import annotations

from coordinator.errors import EventError
from coordinator.events import CompletionEvent
from coordinator.spec import partitions as P
from coordinator.spec.models import PipelineSpec

UNKNOWN_DATASET = "unknown_dataset"
BAD_PARTITION = "bad_partition"
_DATASETS_KEPT = 100_000
_KEYS_KEPT = 10_000


def admission_problem(spec: PipelineSpec, dataset: str, partition: str | None) -> EventError | None:
    """Why an event of `dataset`, partition `partition`, does not belong to `spec` (None: it does)."""
    if dataset not in spec.datasets and dataset not in spec.producers:
        if spec.accept_unknown_datasets or _scheduled(spec, dataset):
            return None
        return EventError(UNKNOWN_DATASET, f"no dataset {dataset!r} in the pipeline spec")
    problem = P.key_problem(spec.partitioning(dataset), partition)
    if problem is not None:
        return EventError(BAD_PARTITION, f"{dataset}: {problem}")
    return None


def _scheduled(spec: PipelineSpec, dataset: str) -> bool:
    """A schedule's ticks (`schedule.<name>`, coordinator/schedules.py) belong to the spec that
    declares the schedule, whether or not it also lists the dataset under `datasets:`."""
    schedules = getattr(spec, "schedules", None) or {}
    return dataset.startswith("schedule.") and dataset[len("schedule.") :] in schedules


def admit(spec: PipelineSpec, event: CompletionEvent) -> None:
    """Raise the EventError (`unknown_dataset` or `bad_partition`) that refuses `event`, if any."""
    problem = admission_problem(spec, event.dataset, event.partition)
    if problem is not None:
        raise problem


class Admission:
    """`admission_problem` with its answers kept: the intake asks for every event. What a dataset
    settles (unknown, let in unchecked, or its partitioning) is kept per dataset, and whether a
    key fits a partitioning per (partitioning, key): a daily key is checked once for every
    dataset of that partitioning, so the memory follows the spec and the keys in use, not every
    (dataset, partition) pair ever seen. The spec never changes once built."""

    __slots__ = ("spec", "_datasets", "_keys")

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        # dataset → its partitioning, or the answer that needs no key (an EventError, None)
        self._datasets: dict[str, P.Partitioning | EventError | None] = {}
        self._keys: dict[tuple[P.Partitioning, str | None], str | None] = {}  # → key_problem

    def problem(self, event: CompletionEvent) -> EventError | None:
        dataset = event.dataset
        try:
            settled = self._datasets[dataset]
        except KeyError:
            settled = self._dataset(dataset)
        if settled is None or isinstance(settled, EventError):
            return settled
        key = (settled, event.partition)
        try:
            problem = self._keys[key]
        except KeyError:
            problem = P.key_problem(settled, event.partition)
            if len(self._keys) >= _KEYS_KEPT:  # bounded: garbage keys must not grow it forever
                self._keys.clear()
            self._keys[key] = problem
        return None if problem is None else EventError(BAD_PARTITION, f"{dataset}: {problem}")

    def _dataset(self, dataset: str) -> P.Partitioning | EventError | None:
        spec = self.spec
        if dataset in spec.datasets or dataset in spec.producers:
            settled: P.Partitioning | EventError | None = spec.partitioning(dataset)
        else:
            settled = admission_problem(spec, dataset, None)
        if len(self._datasets) < _DATASETS_KEPT:  # bounded: garbage names must not grow it forever
            self._datasets[dataset] = settled
        return settled
