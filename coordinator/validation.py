"""pydantic's validation errors, said for the person who wrote the value (a spec, a setting): a
missing key named, a typo'd key with the key it resembles, a validator's own message without
pydantic's "Value error, " before it."""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel

Path = tuple[str | int, ...]


def error_message(err: Any) -> str:
    return str(err["msg"]).removeprefix("Value error, ")


def message(err: Any, model: type[BaseModel]) -> str:
    """One pydantic error of validating `model`, said for the person who wrote the value."""
    loc = tuple(err["loc"])
    if err["type"] == "missing" and loc:  # the missing key has no line: say its name
        return f"{loc[-1]} is required"
    if err["type"] == "extra_forbidden" and loc:  # a typo: name the key it resembles
        close = difflib.get_close_matches(str(loc[-1]), sorted(_keys_at(model, loc[:-1])), n=1, cutoff=0.7)
        if close:
            return f"{error_message(err)} (did you mean {close[0]!r}?)"
    return error_message(err)


def _keys_at(model: type[BaseModel], loc: Path) -> set[str]:
    """The keys accepted at `loc` inside `model`: a field's model, a list item's, a map value's."""
    current: Any = model
    for step in loc:
        if _is_model(current):
            info = current.model_fields.get(str(step))
            if info is None:
                return set()
            current = info.annotation
        else:  # an index or a key: into the container's item model
            current = _inner(current)
    current = _inner(current)
    return set(current.model_fields) if _is_model(current) else set()


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _inner(annotation: Any) -> Any:
    """The model inside an annotation (`X | None`, `tuple[X, ...]`, `dict[str, X]`), or None."""
    if _is_model(annotation):
        return annotation
    for arg in reversed(typing.get_args(annotation)):
        found = _inner(arg)
        if found is not None:
            return found
    return None
