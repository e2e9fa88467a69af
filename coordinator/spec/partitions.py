"""Partition keys and input mappings: which input partitions a job partition needs, and back.

Keys are strings: daily "YYYY-MM-DD", hourly "YYYY-MM-DDTHH", static keys as declared, and
None for an unpartitioned dataset. Everything here is pure so that readiness, validation and
backfill share one definition of "which partitions go together".

Mappings (how one input of a job relates to the job's partition):
- `same`    — the input partition with the job's own key (both must be partitioned alike);
- `{window: hourly}` — the 24 hourly partitions of a daily job's day;
- `latest`  — the latest version of an unpartitioned input. It gates (must be present) but a
  new version does not by itself re-run every partition of a partitioned job; an
  unpartitioned job is re-run by it like by any other input.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

Granularity = Literal["daily", "hourly", "none"]
PARTITION_KEY_MAX = 200  # the state store's partition_key columns (store/schema.py)


def no_nul(value: str) -> str:
    """PostgreSQL text cannot hold a NUL character (YAML can: "\\0" in a double-quoted scalar)."""
    if "\0" in value:
        raise ValueError("a NUL character is not allowed in a name")
    return value


def _distinct(keys: tuple[str, ...]) -> tuple[str, ...]:
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"static keys are distinct: {', '.join(map(repr, twice))} given twice")
    return keys


StaticKey = Annotated[
    str, StringConstraints(min_length=1, max_length=PARTITION_KEY_MAX), AfterValidator(no_nul)
]


class StaticPartitioning(BaseModel):
    """Keys as declared: at least one (a dataset without any could never be complete), each
    once (key_range walks them in order) and each a key the state store can hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    static: Annotated[tuple[StaticKey, ...], Field(min_length=1), AfterValidator(_distinct)]


def _form(value: object) -> str:
    return "static" if isinstance(value, dict | StaticPartitioning) else "name"


# told apart by their form, so that a mapping's mistake (`static: []`) is said as that, and not
# as "Input should be 'daily', 'hourly' or 'none'", the other alternative's complaint
Partitioning = Annotated[
    Annotated[Granularity, Tag("name")] | Annotated[StaticPartitioning, Tag("static")],
    Discriminator(_form),
]


class WindowMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window: Literal["hourly"]


Mapping = Literal["same", "latest"] | WindowMapping

DAILY_FORMAT, HOURLY_FORMAT = "%Y-%m-%d", "%Y-%m-%dT%H"


def describe(p: Partitioning) -> str:
    return f"static {list(p.static)}" if isinstance(p, StaticPartitioning) else p


def key_problem(p: Partitioning, key: str | None) -> str | None:
    """Why `key` is not a partition key of partitioning `p` (None when it is one)."""
    if p == "none":
        return None if key is None else f"unpartitioned dataset got partition {key!r}"
    if key is None:
        return f"a {describe(p)} dataset needs a partition key"
    if isinstance(p, StaticPartitioning):
        return None if key in p.static else f"{key!r} is not one of the static keys {list(p.static)}"
    fmt = DAILY_FORMAT if p == "daily" else HOURLY_FORMAT
    try:
        if datetime.strptime(key, fmt).strftime(fmt) == key:
            return None
    except ValueError:
        pass
    example = "2024-01-31" if p == "daily" else "2024-01-31T05"
    return f"{key!r} is not a {p} partition key (like {example})"


def mapping_problem(input_p: Partitioning, mapping: Mapping, job_p: Partitioning) -> str | None:
    """Why `mapping` cannot relate an input partitioned `input_p` to a job partitioned `job_p`."""
    if mapping == "latest":
        return (
            None
            if input_p == "none"
            else f"mapping 'latest' needs an unpartitioned input, not {describe(input_p)}"
        )
    if isinstance(mapping, WindowMapping):
        if input_p != "hourly" or job_p != "daily":
            return (
                f"mapping {{window: hourly}} needs an hourly input and a daily job, "
                f"not a {describe(input_p)} input and a {describe(job_p)} job"
            )
        return None
    if isinstance(input_p, StaticPartitioning) and isinstance(job_p, StaticPartitioning):
        extra = sorted(set(job_p.static) - set(input_p.static))
        return None if not extra else f"mapping 'same': the input has no static keys {extra}"
    if input_p != job_p:
        return (
            f"mapping 'same' needs the input partitioned like the job: "
            f"input is {describe(input_p)}, job is {describe(job_p)}"
        )
    return None


def job_partitioning_from(input_p: Partitioning, mapping: Mapping) -> Partitioning:
    """The job partitioning an input suggests when the job declares none."""
    if isinstance(mapping, WindowMapping):
        return "daily"
    return "none" if mapping == "latest" else input_p


def required(input_p: Partitioning, mapping: Mapping, job_key: str | None) -> tuple[str | None, ...]:
    """The input partitions one job partition needs (mapping assumed valid)."""
    if mapping == "latest" or input_p == "none":
        return (None,)
    if isinstance(mapping, WindowMapping):
        return tuple(f"{job_key}T{h:02d}" for h in range(24))
    return (job_key,)


def job_keys_for(
    input_p: Partitioning, mapping: Mapping, job_p: Partitioning, input_key: str | None
) -> tuple[str | None, ...]:
    """The job partitions a new version of input partition `input_key` can make ready."""
    if mapping == "latest":
        return (None,) if job_p == "none" else ()
    if isinstance(mapping, WindowMapping):
        return (input_key[:10],) if input_key else ()
    return (input_key,)


def key_range(p: Partitioning, first: str, last: str) -> list[str]:
    """Every key from `first` to `last` inclusive (daily/hourly by time, static by declared order)."""
    for key in (first, last):
        problem = key_problem(p, key)
        if problem:
            raise ValueError(problem)
    if isinstance(p, StaticPartitioning):
        i, j = p.static.index(first), p.static.index(last)
        return list(p.static[i : j + 1])
    if p == "daily":
        d0, d1 = date.fromisoformat(first), date.fromisoformat(last)
        return [(d0 + timedelta(days=n)).isoformat() for n in range((d1 - d0).days + 1)]
    if p == "hourly":
        t0, t1 = datetime.strptime(first, HOURLY_FORMAT), datetime.strptime(last, HOURLY_FORMAT)
        hours = int((t1 - t0).total_seconds() // 3600)
        return [(t0 + timedelta(hours=n)).strftime(HOURLY_FORMAT) for n in range(hours + 1)]
    raise ValueError("an unpartitioned job has no partition range")


def window(key: str | None) -> tuple[datetime, datetime] | None:
    """The time a daily ("YYYY-MM-DD") or hourly ("YYYY-MM-DDTHH") key stands for, as the UTC
    half-open interval [start, end) — what a job loading or transforming that partition selects.
    None for a static key or no partition (they stand for no time)."""
    if key is None:
        return None
    for fmt, length in ((DAILY_FORMAT, timedelta(days=1)), (HOURLY_FORMAT, timedelta(hours=1))):
        try:
            start = datetime.strptime(key, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        if start.strftime(fmt) == key:
            return start, start + length
    return None
