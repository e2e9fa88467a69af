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
    """`admission_problem` with its answers kept per (dataset, partition): the intake asks for every
    event, and a stream repeats the same few pairs. The spec never changes once built."""

    __slots__ = ("spec", "_known")

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self._known: dict[tuple[str, str | None], EventError | None] = {}

    def problem(self, event: CompletionEvent) -> EventError | None:
        key = (event.dataset, event.partition)
        try:
            return self._known[key]
        except KeyError:
            found = admission_problem(self.spec, event.dataset, event.partition)
            if len(self._known) < 100_000:  # bounded: garbage keys must not grow it forever
                self._known[key] = found
            return found
