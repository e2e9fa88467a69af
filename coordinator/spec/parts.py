"""Validate a spec part by part, so that its schema and its cross-field problems come in one pass.

Validating the whole mapping at once stops at the schema: pydantic reports the fields that do
not fit, and there is no spec left for the cross checks (unknown inputs, cycles, two producers,
mappings, pools, kinds and their settings) to run on — a spec with fifteen mistakes reported
seven, and the other eight only after those were fixed. So each dataset, job and top-level key
is validated alone, and a part that does not fit keeps what does: a job's bad input is left
out and its other inputs stay, a bad pool size still declares the pool, a typo'd key is
dropped. The cross checks then run on what was kept, except those a left-out part could make
wrong (a partitioning that did not validate, a job whose inputs were cut): `Doubt` names them.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from coordinator.kinds import KINDS, settings_model
from coordinator.spec.models import DatasetName, DatasetSpec, Doubt, JobName, JobSpec, Path, PipelineSpec
from coordinator.validation import message

Problem = tuple[Path, str]  # (where in the spec's data, message)
# the job fields whose loss can change a partitioning the cross checks compare
_SHAPING = {"partitioning", "inputs", "outputs"}


def assemble(
    data: dict[Any, Any], base_dir: str | FsPath | None = None
) -> tuple[PipelineSpec, list[Problem], Doubt]:
    """The spec made of the parts that validate, every schema problem, and what to doubt.
    With `base_dir`, the settings of kinds with paths get it as their `base_dir` (unless they
    give one), so relative paths mean the spec's folder at load and at every launch alike."""
    problems: list[Problem] = []
    doubt = Doubt()
    top = {k: v for k, v in data.items() if k not in ("datasets", "jobs")}
    top = _top_level(top, problems, doubt)
    datasets: dict[str, DatasetSpec] = {}
    for name, value in _mapping(data, "datasets", problems, _DATASET_NAME).items():
        kept, bad = _salvaged(DatasetSpec, value, ("datasets", name), problems)
        if kept is None or "partitioning" in bad:
            doubt.datasets.add(name)
        datasets[name] = kept if kept is not None else DatasetSpec()
    jobs: dict[str, JobSpec] = {}
    named = _mapping(data, "jobs", problems, _JOB_NAME)
    raw_jobs = data.get("jobs") if isinstance(data.get("jobs"), dict) else {}
    for name, value in raw_jobs.items():
        if name not in named and isinstance(value, dict):  # a job left out: its outputs are not unknown
            doubt.produced.update(o for o in _listed(value.get("outputs")) if isinstance(o, str))
    for name, value in named.items():
        job = _job(name, _with_base_dir(value, base_dir), problems, doubt)
        if job is not None:
            jobs[name] = job
    try:
        spec = PipelineSpec.model_validate({**top, "datasets": datasets, "jobs": jobs})
    except ValidationError:  # what the top level kept still does not fit (it is reported)
        spec = PipelineSpec.model_validate({"datasets": datasets, "jobs": jobs})
        doubt.pools = True
    return spec, problems, doubt


def _with_base_dir(value: Any, base_dir: str | FsPath | None) -> Any:
    if base_dir is None or not isinstance(value, dict) or not isinstance(value.get("settings"), dict):
        return value
    kind, settings = value.get("kind"), value["settings"]
    if not isinstance(kind, str) or kind not in KINDS or "base_dir" in settings:
        return value
    if "base_dir" not in settings_model(kind).model_fields:  # a kind without paths
        return value
    return {**value, "settings": {**settings, "base_dir": str(FsPath(base_dir).resolve())}}


def _top_level(top: dict[Any, Any], problems: list[Problem], doubt: Doubt) -> dict[Any, Any]:
    try:
        PipelineSpec.model_validate(top)
        return top
    except ValidationError as exc:
        errors = exc.errors()
    problems.extend(_located((), errors, PipelineSpec))
    kept = dict(top)
    for err in errors:
        loc = err["loc"]
        if loc[:1] == ("pools",) and len(loc) == 2 and isinstance(kept.get("pools"), dict):
            kept["pools"] = {**kept["pools"], loc[1]: 1}  # still declared: its jobs are not "unknown pool"
        elif loc[:1] == ("pools",) and len(loc) > 2 and isinstance(kept.get("pools"), dict):
            kept["pools"] = {k: v for k, v in kept["pools"].items() if k != loc[1]}  # a name that is no name
        elif loc[:1] == ("pools",):
            kept.pop("pools", None)
            doubt.pools = True
        elif loc[:1] == ("schedules",) and len(loc) > 1 and isinstance(kept.get("schedules"), dict):
            # the other schedules stay; the jobs that take this one's ticks do not call it unknown
            kept["schedules"] = {k: v for k, v in kept["schedules"].items() if k != loc[1]}
            doubt.produced.add(f"schedule.{loc[1]}")
        elif loc:
            kept.pop(loc[0], None)
    return kept


def _job(name: str, value: Any, problems: list[Problem], doubt: Doubt) -> JobSpec | None:
    where: Path = ("jobs", name)
    try:
        return JobSpec.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors()
    problems.extend(_located(where, errors, JobSpec))
    if not isinstance(value, dict):
        return None
    doubt.produced.update(o for o in _listed(value.get("outputs")) if isinstance(o, str))
    kept = dict(value)
    for err in errors:
        loc = err["loc"]
        field = loc[0] if loc else None
        if field in ("inputs", "outputs") and len(loc) > 1 and isinstance(loc[1], int):
            kept[field] = _valid_items(kept.get(field), field)  # the job's other inputs stay
        elif field == "contract" and len(loc) > 1 and isinstance(kept.get("contract"), dict):
            kept["contract"] = {k: v for k, v in kept["contract"].items() if k != loc[1]}
        elif field is not None:
            kept.pop(field, None)
        if field in _SHAPING:
            doubt.jobs.add(name)
        if field in ("kind", "settings"):
            doubt.kinds.add(name)
            kept.setdefault("kind", "command")  # a stand-in: the settings are not checked (Doubt.kinds)
    try:
        return JobSpec.model_validate(kept)
    except ValidationError:
        return None


def _valid_items(items: Any, field: str) -> list[Any]:
    """The items of a job's list field that validate on their own (the rest are reported)."""
    good = []
    for item in _listed(items):
        try:
            JobSpec.model_validate({"kind": "command", field: [item]})
        except ValidationError:
            continue
        good.append(item)
    return good


def _salvaged(
    model: type[BaseModel], value: Any, where: Path, problems: list[Problem]
) -> tuple[Any, set[Any]]:
    """`value` as `model`; when it does not fit, its problems and the model from the fields that do."""
    try:
        return model.model_validate(value), set()
    except ValidationError as exc:
        errors = exc.errors()
    problems.extend(_located(where, errors, model))
    bad = {err["loc"][0] for err in errors if err["loc"]}
    if not isinstance(value, dict):
        return None, {"*"}
    try:
        return model.model_validate({k: v for k, v in value.items() if k not in bad}), bad
    except ValidationError:
        return None, bad


_DATASET_NAME, _JOB_NAME = TypeAdapter(DatasetName), TypeAdapter(JobName)


def _mapping(data: dict[Any, Any], key: str, problems: list[Problem], names: TypeAdapter) -> dict[str, Any]:
    """The `datasets:` or `jobs:` mapping, without the names that are no names (each reported)."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(((key,), "should be a mapping of names to definitions"))
        return {}
    kept = {}
    for name, v in value.items():
        if not isinstance(name, str):
            problems.append(((key, name), f"a name is text, not {name!r}"))
            continue
        try:
            names.validate_python(name)
        except ValidationError as exc:
            problems.extend(((key, name), message(e, PipelineSpec)) for e in exc.errors())
            continue
        kept[name] = v
    return kept


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _located(where: Path, errors: list[Any], model: type[BaseModel]) -> list[Problem]:
    return [(where + tuple(err["loc"]), message(err, model)) for err in errors]
