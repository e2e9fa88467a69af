"""Readiness: which (job, partition) runs become ready — pure logic, no I/O.

Inputs are the spec, a `Snapshot` of the recorded state that matters (the latest version of
each input partition, and the inputs the last live run of each job partition consumed) and
new completion events. The engine loads the snapshot from the store, calls `step`, and
writes the candidates back as runs; the store's unique key on (job, partition, input set)
turns a replayed candidate into a no-op.

Rules:
- Versions: a succeeded event is the new version of its dataset partition when it is newer by
  (produced_at, event_id) than the recorded one — so out-of-order arrival changes nothing and a
  newer completion replaces an older one. Failed events never become versions: downstream waits.
- A job partition that never ran is ready as soon as every input partition it needs has a
  version. One that ran re-runs by its `rerun_on` rule, judged against what its last live (not
  failed, not blocked) run consumed: `any_new` (the default) — at least one input has a newer
  version; `all_new` — every input has (the older `trigger: any` is `any_new`). Because a
  partition's version only moves forward by (produced_at, event_id), "not what the last run
  consumed" is "newer than it": a stale version that arrives after a newer one is no version
  and re-runs nothing, and a newer one that arrives after a stale one always re-runs — so
  under `any_new` the last run of a partition consumes the newest version of every input,
  whatever order the events came in (downstream is never left built on superseded data).
- One candidate per job partition per `step`: a newer one made later in the batch replaces an
  earlier one. A candidate says whether its job partition ran before the batch (`rerun`): the
  store then starts it only once that run has ended, so the newest run finishes last.
- A `latest` input of a partitioned job gates (it must be present) and does not re-run
  partitions that already ran; a new version of it makes ready the partitions that never ran
  and were waiting only for it. That keeps the runs independent of the order of events.
- Opt-in, `on_change: rerun_latest` on such an input (a model whose alias moved): a new version
  of it also re-runs the job's newest partition that has a live run, with the new version and
  the other inputs' current versions — whatever the re-run rule says. Which partition that is
  depends on what ran before the new version arrived, so only for these inputs do runs depend
  on event order; replays and duplicates still create nothing (the version is not new).
- Contracts are checked on the versions a candidate would consume; a violation makes the
  candidate blocked (the engine launches nothing and publishes a failed event).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from coordinator.errors import ContractViolation
from coordinator.events import Column, CompletionEvent
from coordinator.spec import partitions as P
from coordinator.spec.models import InputSpec, PipelineSpec

Key = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Version:
    event_id: str
    dataset: str
    partition: str | None
    produced_at: float
    row_count: int | None = None
    location: str | None = None
    columns: tuple[Column, ...] | None = None

    @classmethod
    def of(cls, event: CompletionEvent) -> Version:
        return cls(
            event.event_id,
            event.dataset,
            event.partition,
            event.produced_at.timestamp(),
            event.row_count,
            event.location,
            event.columns,
        )

    def newer_than(self, other: Version | None) -> bool:
        return other is None or (self.produced_at, self.event_id) > (other.produced_at, other.event_id)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A run that should exist: job partition plus the exact versions it consumes."""

    job: str
    partition: str | None
    inputs: tuple[Version, ...]
    violation: ContractViolation | None = None
    rerun: bool = False  # the job partition has a live run already (which may still be running)

    @property
    def input_key(self) -> str:
        return input_key(v.event_id for v in self.inputs)


def input_key(event_ids: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(event_ids)).encode()).hexdigest()[:40]


@dataclass
class Snapshot:
    latest: dict[Key, Version] = field(default_factory=dict)
    consumed: dict[Key, frozenset[str]] = field(default_factory=dict)  # (job, partition) → event ids

    def apply(self, event: CompletionEvent) -> bool:
        """Record a succeeded event if it is the newest version; True when the version changed."""
        if not event.succeeded:
            return False
        version = Version.of(event)
        key = (event.dataset, event.partition)
        if version.newer_than(self.latest.get(key)):
            self.latest[key] = version
            return True
        return False


@dataclass(frozen=True, slots=True)
class _DatasetPlan:
    """What readiness asks of the spec about one dataset, for every event of it: one lookup."""

    consumers: tuple[tuple[str, P.Partitioning, P.Mapping, P.Partitioning], ...]
    gated: tuple[tuple[str, InputSpec], ...]  # see _gated
    rerun: tuple[str, ...]  # see rerun_jobs


def _memo(spec: PipelineSpec, view: str, name: str, compute):
    """`compute(spec, name)` (a dataset's or a job's plan), once per spec and name: plans are
    read for every event, and a spec is not changed once built."""
    cache = spec.memo.get(view)
    if cache is None:
        cache = spec.memo[view] = {}
    got = cache.get(name)
    if got is None:
        got = cache[name] = compute(spec, name)
    return got


def _dataset_plan(spec: PipelineSpec, dataset: str) -> _DatasetPlan:
    return _memo(spec, "dataset_plans", dataset, _plan_dataset)


def _plan_dataset(spec: PipelineSpec, dataset: str) -> _DatasetPlan:
    mine = spec.partitioning(dataset)
    consumers = spec.consumers.get(dataset, ())
    return _DatasetPlan(
        tuple((job, mine, inp.mapping, spec.job_partitioning(job)) for job, inp in consumers),
        tuple(_find_gated(spec, dataset)),
        tuple(job for job, inp in consumers if inp.on_change == "rerun_latest"),
    )


@dataclass(frozen=True, slots=True)
class _JobPlan:
    """What `evaluate` asks of the spec about one job, for every partition it looks at."""

    inputs: tuple[tuple[InputSpec, P.Partitioning, bool], ...]  # (input, its partitioning, triggers)
    all_new: bool  # a re-run needs every triggering input new (rerun_on: all_new)
    contracted: bool  # some input has a column contract


def _job_plan(spec: PipelineSpec, job: str) -> _JobPlan:
    return _memo(spec, "job_plans", job, _plan_job)


def _plan_job(spec: PipelineSpec, job: str) -> _JobPlan:
    job_spec = spec.jobs[job]
    return _JobPlan(
        tuple((inp, spec.partitioning(inp.dataset), _triggers(spec, job, inp)) for inp in job_spec.inputs),
        job_spec.trigger == "all" and job_spec.rerun_on == "all_new",
        any(spec.contract(job, inp.dataset) for inp in job_spec.inputs),
    )


def _affected(plan: _DatasetPlan, partition: str | None) -> list[Key]:
    out: list[Key] = []
    for job, partitioning, mapping, job_partitioning in plan.consumers:
        for key in P.job_keys_for(partitioning, mapping, job_partitioning, partition):
            if (job, key) not in out:
                out.append((job, key))
    return out


def affected(spec: PipelineSpec, dataset: str, partition: str | None) -> list[Key]:
    """Job partitions that a new version of (dataset, partition) may make ready."""
    return _affected(_dataset_plan(spec, dataset), partition)


def needed(spec: PipelineSpec, job: str, partition: str | None) -> list[Key]:
    """Every input partition that (job, partition) consumes."""
    return [
        (inp.dataset, key)
        for inp, partitioning, _ in _job_plan(spec, job).inputs
        for key in P.required(partitioning, inp.mapping, partition)
    ]


def _triggers(spec: PipelineSpec, job: str, inp: InputSpec) -> bool:
    return not (inp.mapping == "latest" and spec.job_partitioning(job) != "none")


def evaluate(
    spec: PipelineSpec,
    snap: Snapshot,
    job: str,
    partition: str | None,
    force: bool = False,
    refresh: bool = False,
) -> Candidate | None:
    """The run (job, partition) should get now, or None while it waits (or has nothing new).

    `force` skips the re-run rule (rerun, backfill) but never the presence of inputs.
    `refresh` replaces it: fire when an `on_change: rerun_latest` input has a new version.
    """
    plan = _job_plan(spec, job)
    latest = snap.latest
    groups: list[tuple[InputSpec, bool, list[Version]]] = []
    for inp, partitioning, triggers in plan.inputs:
        dataset = inp.dataset
        versions = [latest.get((dataset, key)) for key in P.required(partitioning, inp.mapping, partition)]
        if None in versions:
            return None
        groups.append((inp, triggers, versions))  # type: ignore[arg-type]
    previous = snap.consumed.get((job, partition))
    if previous is not None and refresh and not force:
        if not any(v.event_id not in previous for inp, _, vs in groups if inp.on_change for v in vs):
            return None
    elif previous is not None and not force:
        changed = [
            any(v.event_id not in previous for v in versions) for _, triggers, versions in groups if triggers
        ]
        fires = all(changed) if plan.all_new else any(changed)
        if not changed or not fires:
            return None
    if len(groups) == 1 and len(groups[0][2]) == 1:
        inputs: tuple[Version, ...] = tuple(groups[0][2])
    else:
        inputs = tuple(
            sorted((v for _, _, vs in groups for v in vs), key=lambda v: (v.dataset, v.partition or ""))
        )
    violation = check_contract(spec, job, inputs) if plan.contracted else None
    return Candidate(job, partition, inputs, violation, previous is not None)


def check_contract(spec: PipelineSpec, job: str, inputs: Iterable[Version]) -> ContractViolation | None:
    """The first input version whose columns break the job's contract (missing or retyped columns)."""
    for v in inputs:
        contract = spec.contract(job, v.dataset)
        if not contract or v.columns is None:
            continue
        actual = {c.name: c.type.strip().lower() for c in v.columns}
        bad, details = [], []
        for col in contract:
            if col.name not in actual:
                bad.append(col.name)
                details.append(f"missing column {col.name}")
            elif actual[col.name] != col.type.strip().lower():
                bad.append(col.name)
                details.append(f"column {col.name} is {actual[col.name]}, the contract says {col.type}")
        if bad:
            return ContractViolation(v.dataset, v.partition, bad, "; ".join(details))
    return None


def step(spec: PipelineSpec, snap: Snapshot, events: Iterable[CompletionEvent]) -> list[Candidate]:
    """Apply events in order and return the candidates they make ready (updating `snap.consumed`).

    One candidate per job partition: when a later event of the batch makes a newer one (a stale
    version and the newer one in the same batch), it replaces the earlier, which would only run
    on superseded data — beside the newer run, and possibly finishing after it."""
    out: dict[Key, Candidate] = {}
    held: dict[Key, frozenset[str] | None] = {}  # what each job partition consumed before the batch
    for event in events:
        if not snap.apply(event):
            continue
        plan = _dataset_plan(spec, event.dataset)
        found = _affected(plan, event.partition)
        if plan.gated:
            found += _waiting(spec, snap, event)
        keys = dict.fromkeys(found, False)
        if plan.rerun:
            keys.update(dict.fromkeys(_refreshed(spec, snap, event), True))
        for key, refresh in keys.items():
            cand = evaluate(spec, snap, *key, refresh=refresh)
            if cand is None:
                continue
            if key not in held:
                held[key] = snap.consumed.get(key)
            before = held[key]
            if before is None and cand.rerun:  # it replaces this batch's own, not a run stored
                cand = replace(cand, rerun=False)
            out.pop(key, None)
            out[key] = cand
            if cand.violation is None:
                snap.consumed[key] = frozenset(v.event_id for v in cand.inputs)
            elif before is None:  # a blocked candidate consumes nothing; the one it replaced is gone
                snap.consumed.pop(key, None)
            else:
                snap.consumed[key] = before
    return list(out.values())


def _gated(spec: PipelineSpec, dataset: str) -> tuple[tuple[str, InputSpec], ...]:
    """(job, first triggering input) of the partitioned jobs that take `dataset` as `latest`."""
    return _dataset_plan(spec, dataset).gated


def _find_gated(spec: PipelineSpec, dataset: str) -> list[tuple[str, InputSpec]]:
    out = []
    for job, inp in spec.consumers.get(dataset, ()):
        if not _triggers(spec, job, inp):
            first = next((i for i in spec.jobs[job].inputs if _triggers(spec, job, i)), None)
            if first is not None:
                out.append((job, first))
    return out


def _waiting(spec: PipelineSpec, snap: Snapshot, event: CompletionEvent) -> list[Key]:
    """Job partitions that never ran and may have waited only for this `latest` input."""
    out: list[Key] = []
    for job, first in _gated(spec, event.dataset):
        job_p, input_p = spec.job_partitioning(job), spec.partitioning(first.dataset)
        keys = {
            k
            for d, p in list(snap.latest)
            if d == first.dataset
            for k in P.job_keys_for(input_p, first.mapping, job_p, p)
        }
        out.extend((job, k) for k in sorted(keys, key=str) if (job, k) not in snap.consumed)
    return out


def rerun_jobs(spec: PipelineSpec, dataset: str) -> tuple[str, ...]:
    """Jobs that re-run their newest partition on a new version of `dataset` (`on_change`)."""
    return _dataset_plan(spec, dataset).rerun


def _refreshed(spec: PipelineSpec, snap: Snapshot, event: CompletionEvent) -> list[Key]:
    """The newest job partition with a live run, of each job re-run by this event's dataset.

    The snapshot must hold it: the store loads each such job's newest live run."""
    out: list[Key] = []
    for job in rerun_jobs(spec, event.dataset):
        ran = [p for j, p in snap.consumed if j == job and p is not None]
        if ran:
            out.append((job, max(ran)))
    return out


def scans_for_events(spec: PipelineSpec, events: Iterable[CompletionEvent]) -> set[str]:
    """Datasets whose every partition a snapshot must hold (inputs of jobs gated by a `latest`)."""
    return {first.dataset for e in events for _, first in _gated(spec, e.dataset)}


def reruns_for_events(spec: PipelineSpec, events: Iterable[CompletionEvent]) -> set[str]:
    """Jobs whose newest partition with a live run a snapshot must hold (`on_change` inputs)."""
    return {job for e in events for job in rerun_jobs(spec, e.dataset)}


def needed_for_events(
    spec: PipelineSpec,
    events: Iterable[CompletionEvent],
    snap: Snapshot | None = None,
    extra_jobs: Iterable[Key] = (),
) -> tuple[set[Key], set[Key]]:
    """What a snapshot must hold to `step` these events: (input partitions, job partitions).

    Given a snapshot already holding the scanned datasets (`scans_for_events`), the waiting
    partitions count too; `extra_jobs` are job partitions to evaluate besides (those the caller
    asks for, and the newest ran partition of each of `reruns_for_events`).
    """
    parts: set[Key] = set()
    jobs: set[Key] = set()
    for e in events:
        parts.add((e.dataset, e.partition))
        plan = _dataset_plan(spec, e.dataset)
        candidates = _affected(plan, e.partition)
        if snap is not None and plan.gated:
            candidates += _waiting(spec, snap, e)
        for jp in candidates:
            if jp not in jobs:
                jobs.add(jp)
                parts.update(needed(spec, *jp))
    for jp in extra_jobs:
        jobs.add(jp)
        parts.update(needed(spec, *jp))
    return parts, jobs
