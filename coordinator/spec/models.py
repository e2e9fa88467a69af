"""The pipeline spec as pydantic models: the Python API, and what the YAML loader produces.

    spec = PipelineSpec(
        datasets={"raw.users": DatasetSpec(partitioning="daily")},
        jobs={"features": JobSpec(kind="command", inputs=["raw.users"], outputs=["features"],
                                  settings={"command": ["make-features", "{partition}"]})},
    ).checked()

Models reject unknown keys (a typo is an error). `problems()` finds what a single field cannot
see — unknown datasets, cycles, a dataset produced by two jobs, mappings that do not fit the
partitioning, bad kind settings — as (path, message) pairs; the loader turns paths into lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from coordinator.errors import SpecError, SpecProblem
from coordinator.events import Column
from coordinator.kinds import KINDS, settings_model
from coordinator.schedules import PREFIX as SCHEDULE_PREFIX
from coordinator.schedules import ScheduleSpec, implied_datasets, schedule_of
from coordinator.spec import partitions as P
from coordinator.spec.partitions import Mapping, Partitioning, no_nul
from coordinator.validation import message

Path = tuple[str | int, ...]
DEFAULT_POOL, DEFAULT_POOL_SIZE = "default", 8

# Names as long as the state store's columns take (store/schema.py): a longer one validated, then
# failed every write of it at run time — on every restart — so it is the spec's problem, on its
# line. A schedule's name leaves room for the `schedule.` of its dataset.
DATASET_NAME_MAX, JOB_NAME_MAX, POOL_NAME_MAX = 500, 500, 200
SCHEDULE_NAME_MAX = DATASET_NAME_MAX - len(SCHEDULE_PREFIX)


def _name(what: str, longest: int, why: str = "the state store's limit") -> Any:
    def fits(name: str) -> str:
        if len(name) > longest:
            raise ValueError(f"a {what} name is at most {longest} characters ({why}), not {len(name)}")
        return no_nul(name)

    return Annotated[str, StringConstraints(min_length=1), AfterValidator(fits)]


DatasetName = _name("dataset", DATASET_NAME_MAX)
JobName = _name("job", JOB_NAME_MAX)
PoolName = _name("pool", POOL_NAME_MAX)
ScheduleName = _name(
    "schedule", SCHEDULE_NAME_MAX, f"its dataset {SCHEDULE_PREFIX}<name> is at most {DATASET_NAME_MAX}"
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSpec(_Model):
    partitioning: Partitioning = "none"
    columns: tuple[Column, ...] | None = None  # the dataset's column contract, checked on every consumer


class InputSpec(_Model):
    """One input of a job. `on_change: rerun_latest` (only with `mapping: latest` on a daily or
    hourly job) opts out of "a `latest` input only gates": a new version of the input — a model
    whose `champion` alias moved — re-runs the job's newest partition that already ran."""

    dataset: DatasetName
    mapping: Mapping = "same"
    on_change: Literal["rerun_latest"] | None = None


class RetrySpec(_Model):
    max_attempts: int = Field(default=1, ge=1, le=100)
    backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=60.0, ge=0)

    def delay_s(self, attempt: int) -> float:
        """Wait before attempt `attempt + 1`, after attempt `attempt` (1-based) failed."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


class JobSpec(_Model):
    kind: str = Field(min_length=1)
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[DatasetName, ...] = ()
    partitioning: Partitioning | None = None
    trigger: Literal["all", "any"] = "all"
    # when a partition that ran runs again: an input newer than its last run consumed (any_new),
    # or every input newer (all_new, which may leave it built on superseded data; README)
    rerun_on: Literal["any_new", "all_new"] = "any_new"
    retries: RetrySpec = RetrySpec()
    timeout_s: float | None = Field(default=None, gt=0)
    pool: PoolName = DEFAULT_POOL
    # "HH:MM" after its partition ends (a daily partition at the next midnight UTC) by which the
    # job should have run; a partition still waiting for inputs past it is alerted (alerts.py)
    deadline: str | None = Field(default=None, pattern=r"^\d{1,3}:[0-5]\d$")
    contract: dict[str, tuple[Column, ...]] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("inputs", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"dataset": v} if isinstance(v, str) else v for v in value]
        return value


def _room(size: int) -> int:
    if size < 1:
        raise ValueError(f"a pool must allow at least 1 run, not {size}")
    return size


PoolSize = Annotated[int, AfterValidator(_room)]  # checked per pool, so the error has that pool's line


@dataclass
class Doubt:
    """What the cross checks cannot trust in a spec whose parts did not all validate (spec/parts.py):
    datasets and jobs whose partitioning may be other than written, jobs whose kind did not
    validate, datasets a job that did not validate at all claims to produce, and the pools."""

    datasets: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    kinds: set[str] = field(default_factory=set)
    produced: set[str] = field(default_factory=set)
    pools: bool = False


class PipelineSpec(_Model):
    datasets: dict[DatasetName, DatasetSpec] = Field(default_factory=dict)
    jobs: dict[JobName, JobSpec] = Field(default_factory=dict)
    pools: dict[PoolName, PoolSize] = Field(default_factory=dict)
    # cron schedules whose ticks are the datasets `schedule.<name>` (coordinator/schedules.py)
    schedules: dict[ScheduleName, ScheduleSpec] = Field(default_factory=dict)
    # events of datasets this spec does not name are recorded, not dead-lettered (a shared bus)
    accept_unknown_datasets: bool = False

    @model_validator(mode="before")
    @classmethod
    def _schedule_datasets(cls, data: Any) -> Any:
        """Each schedule declares its dataset, unless `datasets:` does (problems() compares them)."""
        if isinstance(data, dict) and isinstance(data.get("datasets", {}), dict):
            implied = implied_datasets(data.get("schedules"))
            # a schedule's name that is no name is reported on that schedule, not again as a dataset
            implied = {k: v for k, v in implied.items() if len(k) <= DATASET_NAME_MAX and "\0" not in k}
            if implied:
                data = {**data, "datasets": {**implied, **(data.get("datasets") or {})}}
        return data

    # ------------------------------------------------------------------ resolved views
    @cached_property
    def producers(self) -> dict[str, str]:
        """Dataset → the job that produces it (the first one, when a spec is invalid)."""
        out: dict[str, str] = {}
        for name, job in self.jobs.items():
            for ds in job.outputs:
                out.setdefault(ds, name)
        return out

    def job_partitioning(self, job: str) -> Partitioning:
        return self._job_partitionings[job]

    def partitioning(self, dataset: str) -> Partitioning:
        """Declared partitioning, or — for an undeclared job output — that of its job."""
        if dataset in self.datasets:
            return self.datasets[dataset].partitioning
        producer = self.producers.get(dataset)
        return self.job_partitioning(producer) if producer else "none"

    @cached_property
    def _job_partitionings(self) -> dict[str, Partitioning]:
        """Every job's partitioning: declared, else its first declared output's, else what its
        first known input suggests through that input's mapping. Resolved once, walking a chain
        of undeclared datasets without recursion (it may be thousands of jobs deep); a cycle of
        them gives the job it comes back to "none"."""
        out: dict[str, Partitioning] = {}
        for start in self.jobs:
            chain: list[tuple[str, Mapping]] = []  # jobs whose partitioning is their source's, mapped
            job, value = start, None
            while value is None:
                if job in out:
                    value = out[job]
                    break
                spec = self.jobs[job]
                source = self._partitioning_source(job)
                if spec.partitioning is not None:
                    value = spec.partitioning
                elif source is None:
                    value = "none"
                elif source[1] is None:
                    value = self.datasets[source[0]].partitioning
                elif source[0] in self.datasets:
                    value = P.job_partitioning_from(self.datasets[source[0]].partitioning, source[1])
                else:
                    chain.append((job, source[1]))
                    job = self.producers[source[0]]
                    if any(job == j for j, _ in chain):
                        value = "none"  # back on this chain: a cycle, reported by problems()
                        break
                    continue
                out[job] = value
            for earlier, mapping in reversed(chain):
                value = P.job_partitioning_from(value, mapping)
                out[earlier] = value
        return out

    def _partitioning_source(self, job: str) -> tuple[str, Mapping | None] | None:
        """Where a job without a declared partitioning takes it from: its first declared output
        (mapping None), else its first known input through that input's mapping."""
        spec = self.jobs[job]
        for ds in spec.outputs:
            if ds in self.datasets:
                return ds, None
        for inp in spec.inputs:
            if inp.dataset in self.datasets or inp.dataset in self.producers:
                return inp.dataset, inp.mapping
        return None

    def _unsure_job(self, job: str, doubt: Doubt) -> bool:
        """Whether the job's partitioning rests on a part that did not validate (spec/parts.py)."""
        if not (doubt.jobs or doubt.datasets or doubt.produced):
            return False
        seen: set[str] = set()
        while job not in seen:
            seen.add(job)
            if self.jobs[job].partitioning is not None:
                return False
            if job in doubt.jobs:
                return True
            source = self._partitioning_source(job)
            if source is None:
                return False
            if source[0] in self.datasets or source[0] not in self.producers:
                return self._unsure_dataset(source[0], doubt)
            job = self.producers[source[0]]
        return False

    def _unsure_dataset(self, dataset: str, doubt: Doubt) -> bool:
        if dataset in self.datasets:
            return dataset in doubt.datasets
        producer = self.producers.get(dataset)
        if producer is None:  # claimed by a job that did not validate, or unknown (reported as such)
            return dataset in doubt.produced
        return self._unsure_job(producer, doubt)

    @cached_property
    def consumers(self) -> dict[str, tuple[tuple[str, InputSpec], ...]]:
        out: dict[str, list[tuple[str, InputSpec]]] = {}
        for name, job in self.jobs.items():
            for inp in job.inputs:
                out.setdefault(inp.dataset, []).append((name, inp))
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def job_pools(self) -> dict[str, str]:
        """Each job's pool (what a run is created and claimed in)."""
        return {name: job.pool for name, job in self.jobs.items()}

    @cached_property
    def attempt_budgets(self) -> dict[str, int]:
        """Each job's number of attempts (what a run is created with)."""
        return {name: job.retries.max_attempts for name, job in self.jobs.items()}

    @cached_property
    def pool_sizes(self) -> dict[str, int]:
        """The size of every pool a job uses."""
        return {pool: self.pool_size(pool) for pool in dict.fromkeys(self.job_pools.values())}

    @cached_property
    def memo(self) -> dict[str, dict]:
        """Scratch space for views other modules derive from this spec (readiness keeps its
        per-dataset lookups here); a spec is not changed once built, so they stay true."""
        return {}

    def contract(self, job: str, dataset: str) -> tuple[Column, ...] | None:
        """The columns `job` requires of input `dataset`: its own contract, else the dataset's."""
        spec = self.jobs[job]
        if dataset in spec.contract:
            return spec.contract[dataset]
        declared = self.datasets.get(dataset)
        return declared.columns if declared else None

    def pool_size(self, pool: str) -> int:
        return self.pools.get(pool, DEFAULT_POOL_SIZE if pool == DEFAULT_POOL else 1)

    # ------------------------------------------------------------------ validation
    def problems(self, check_kinds: bool = True, doubt: Doubt | None = None) -> list[tuple[Path, str]]:
        """Every cross-field problem, as (path in the spec, message). With `doubt` (parts of the
        spec that did not validate), the checks those parts could make wrong are left out."""
        doubt = doubt or Doubt()
        found: list[tuple[Path, str]] = []
        known = set(self.datasets) | set(self.producers) | doubt.produced
        seen_out: dict[str, str] = {}
        for name, job in self.jobs.items():
            base: Path = ("jobs", name)
            job_p = self.job_partitioning(name)
            unsure = self._unsure_job(name, doubt)
            if job.pool != DEFAULT_POOL and job.pool not in self.pools and not doubt.pools:
                found.append(
                    (base + ("pool",), f"job {name!r}: unknown pool {job.pool!r} (declare it in pools)")
                )
            if job.trigger == "any" and job.rerun_on == "all_new":
                problem = f"job {name!r}: trigger any and rerun_on all_new contradict each other (drop one)"
                found.append((base + ("rerun_on",), problem))
            if job.deadline and job_p not in ("daily", "hourly") and not unsure:
                problem = f"job {name!r}: a deadline needs a daily or hourly job, not {P.describe(job_p)}"
                found.append((base + ("deadline",), problem))
            for i, inp in enumerate(job.inputs):
                found.extend(self._input_problems(name, base + ("inputs", i), inp, job_p, known, doubt))
            for i, ds in enumerate(job.outputs):
                where = base + ("outputs", i)
                if ds in seen_out:
                    found.append(
                        (where, f"dataset {ds!r} is produced by two jobs: {seen_out[ds]!r} and {name!r}")
                    )
                seen_out.setdefault(ds, name)
                declared = self.datasets.get(ds)
                if declared and declared.partitioning != job_p and not unsure and ds not in doubt.datasets:
                    found.append(
                        (
                            where,
                            f"job {name!r} is {P.describe(job_p)} but its output {ds!r} is "
                            f"{P.describe(declared.partitioning)}",
                        )
                    )
            inputs = {i.dataset for i in job.inputs}
            for ds in job.contract:
                if ds not in inputs and name not in doubt.jobs:
                    found.append(
                        (base + ("contract", ds), f"job {name!r}: contract names {ds!r}, not an input")
                    )
            if check_kinds and name not in doubt.kinds:
                found.extend(_kind_problems(name, job))
        found.extend(self._schedule_problems(doubt))
        for cycle in _cycles(self):
            found.append((("jobs", cycle[0]), "cycle: " + " → ".join(cycle + [cycle[0]])))
        return found

    def _input_problems(
        self, name: str, where: Path, inp: InputSpec, job_p: Partitioning, known: set[str], doubt: Doubt
    ) -> list[tuple[Path, str]]:
        if inp.dataset not in known:
            schedule = schedule_of(inp.dataset)
            if schedule is not None:
                return [(where, f"job {name!r}: unknown schedule {schedule!r} (declare it in schedules)")]
            return [
                (
                    where,
                    f"job {name!r}: unknown dataset {inp.dataset!r} "
                    "(declare it in datasets or produce it by a job)",
                )
            ]
        if self._unsure_job(name, doubt) or self._unsure_dataset(inp.dataset, doubt):
            return []
        problem = P.mapping_problem(self.partitioning(inp.dataset), inp.mapping, job_p)
        if problem:
            return [(where, f"job {name!r}, input {inp.dataset!r}: {problem}")]
        if inp.on_change and (inp.mapping != "latest" or job_p not in ("daily", "hourly")):
            return [
                (
                    where + ("on_change",),
                    f"job {name!r}, input {inp.dataset!r}: on_change rerun_latest needs "
                    f"mapping latest on a daily or hourly job, not mapping {inp.mapping!r} "
                    f"on {P.describe(job_p)}",
                )
            ]
        return []

    def _schedule_problems(self, doubt: Doubt) -> list[tuple[Path, str]]:
        """A `schedule.` dataset no schedule declares, one declared unlike its schedule, one a job
        claims to produce (ticks are the coordinator's own). An unknown one as an input is named
        by _input_problems."""
        found: list[tuple[Path, str]] = []
        unknown = "unknown schedule {!r} (declare it in schedules)"
        for name, dataset in self.datasets.items():
            schedule = schedule_of(name)
            if schedule is None or name in doubt.produced:
                continue
            if schedule not in self.schedules:
                found.append((("datasets", name), f"dataset {name!r}: " + unknown.format(schedule)))
            elif dataset.partitioning != self.schedules[schedule].partitioning:
                ticks = self.schedules[schedule].partitioning
                problem = (
                    f"dataset {name!r} is {P.describe(dataset.partitioning)}; its schedule ticks {ticks}"
                )
                found.append((("datasets", name, "partitioning"), problem))
        for job_name, job in self.jobs.items():
            for i, ds in enumerate(job.outputs):
                if schedule_of(ds) is not None:
                    problem = (
                        f"job {job_name!r}: {ds!r} is a schedule's ticks, which only the coordinator makes"
                    )
                    found.append((("jobs", job_name, "outputs", i), problem))
        return found

    def checked(self) -> PipelineSpec:
        """This spec, or SpecError listing every problem (for specs built in Python)."""
        problems = self.problems()
        if problems:
            raise SpecError(
                [SpecProblem("<python>", 0, f"{'.'.join(map(str, p))}: {m}") for p, m in problems]
            )
        return self


def _kind_problems(name: str, job: JobSpec) -> Iterable[tuple[Path, str]]:
    """The job's kind and its `settings:` block, checked against the kind's light settings model
    (coordinator/kinds), so that checking a spec imports no launcher."""
    base: Path = ("jobs", name)
    try:
        model = settings_model(job.kind)
    except KeyError:
        known = ", ".join(sorted(KINDS))
        yield base + ("kind",), f"job {name!r}: unknown kind {job.kind!r} (known: {known})"
        return
    try:
        settings = model.model_validate(job.settings)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            shown = loc[:-1] if err["type"] == "missing" else loc  # a missing key is named in the message
            what = f"settings {'.'.join(map(str, shown))}" if shown else "settings"
            yield base + ("settings",) + loc, f"job {name!r}, {what}: {message(err, model)}"
        return
    # a kind whose settings can tell outputs it will never produce (dbt: no node of its manifest)
    for i, problem in getattr(settings, "output_problems", lambda _: [])(job.outputs):
        yield base + ("outputs", i), f"job {name!r}: {problem}"


def _cycles(spec: PipelineSpec) -> list[list[str]]:
    """Job-level cycles (job → jobs consuming its outputs), each reported once."""
    edges = {
        name: sorted({c for ds in job.outputs for c, _ in spec.consumers.get(ds, ())})
        for name, job in spec.jobs.items()
    }
    color: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []
    for root in sorted(edges):
        if root in color:
            continue
        path: list[str] = [root]  # depth-first without recursion: a chain may be thousands deep
        todo = [iter(edges[root])]
        color[root] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                color[path.pop()] = 2
                todo.pop()
            elif color.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :])
            elif nxt not in color:
                color[nxt] = 1
                path.append(nxt)
                todo.append(iter(edges.get(nxt, ())))
    return cycles
