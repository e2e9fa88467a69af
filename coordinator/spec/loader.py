"""Load a pipeline spec from YAML, reporting every problem with its file and line.

The YAML is composed into nodes first so that every value keeps its line; strings then get
`${ENV_VAR}` (or `${ENV_VAR:-default}`) interpolation — secrets stay out of the file — and the
result is validated part by part (spec/parts.py), so the schema's problems and the cross
checks' (unknown inputs, cycles, mappings, pools, kinds and their settings) are found in the
same pass. All problems are raised together as one SpecError, sorted by line, each on the
line of the key at fault, so a user fixes a spec in one pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any

import yaml

from coordinator.errors import SpecError, SpecProblem
from coordinator.spec.models import Path, PipelineSpec
from coordinator.spec.parts import assemble

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_spec(path: str | FsPath, env: Mapping[str, str] | None = None) -> PipelineSpec:
    """Read and validate the spec at `path`. Raises SpecError with every problem found."""
    path = FsPath(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([SpecProblem(str(path), 0, f"cannot read the spec: {exc.strerror or exc}")]) from None
    return parse_spec(text, str(path), env)


def parse_spec(text: str, file: str = "<spec>", env: Mapping[str, str] | None = None) -> PipelineSpec:
    env = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        raise SpecError(
            [SpecProblem(file, line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
        ) from None
    problems: list[SpecProblem] = []
    lines: dict[Path, int] = {}
    data = _build(node, (), lines, problems, file, env) if node is not None else {}
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(file, 1, "a spec is a mapping with datasets, jobs and pools")])

    def line_of(path: Path) -> int:
        for n in range(len(path), -1, -1):
            if path[:n] in lines:
                return lines[path[:n]]
        return 1

    spec, schema, doubt = assemble(data)
    seen: set[tuple[int, str]] = set()
    for loc, message in schema:
        located = _known_prefix(loc, lines)
        where = ".".join(map(str, located))
        key = (line_of(located), where)
        if key in seen:  # a union reports each alternative; one message per place is enough
            continue
        seen.add(key)
        problems.append(SpecProblem(file, key[0], f"{where}: {message}"))
    problems.extend(SpecProblem(file, line_of(p), m) for p, m in spec.problems(doubt=doubt))
    if problems:
        raise SpecError(sorted(problems, key=lambda p: p.line))
    return spec


def _known_prefix(loc: Path, lines: dict[Path, int]) -> Path:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return loc[:n]
    return loc[:1]


def _build(
    node: yaml.Node,
    path: Path,
    lines: dict[Path, int],
    problems: list[SpecProblem],
    file: str,
    env: Mapping[str, str],
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in out:
                problems.append(SpecProblem(file, key_node.start_mark.line + 1, f"duplicate key {key!r}"))
            out[key] = _build(value_node, path + (key,), lines, problems, file, env)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, path + (i,), lines, problems, file, env) for i, v in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str) and "${" in value:

        def substitute(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(
                SpecProblem(file, node.start_mark.line + 1, f"environment variable {name} is not set")
            )
            return ""

        value = _ENV.sub(substitute, value)
    return value


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return str(node.value)  # complex keys are not part of the format
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node)
    finally:
        loader.dispose()
