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

MAX_VALUES = 1_000_000  # values a spec may expand to; a large pipeline has tens of thousands
# lists and mappings inside each other; a spec needs a handful (a kind's settings a few more), and
# the composer recurses per level: a few hundred levels were a RecursionError, not a problem
MAX_DEPTH = 100
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_spec(path: str | FsPath, env: Mapping[str, str] | None = None) -> PipelineSpec:
    """Read and validate the spec at `path`. Raises SpecError with every problem found."""
    path = FsPath(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError([SpecProblem(str(path), 0, f"cannot read the spec: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # the line of the first byte that is not UTF-8
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1].hex()
        said = f"not UTF-8 text: byte 0x{bad} ({exc.reason})"
        raise SpecError([SpecProblem(str(path), line, said)]) from None
    return parse_spec(text, str(path), env, base_dir=path.parent)


def parse_spec(
    text: str,
    file: str = "<spec>",
    env: Mapping[str, str] | None = None,
    base_dir: str | FsPath | None = None,
) -> PipelineSpec:
    """Validate spec `text` (from `file`, for the messages). `base_dir` is what relative paths in
    the kinds' settings resolve against (load_spec: the spec file's folder); else the working one."""
    env = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=_Loader)
    except _TooDeep as exc:
        said = f"nested too deeply (more than {MAX_DEPTH} levels)"
        raise SpecError([SpecProblem(file, exc.line, said)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        raise SpecError(
            [SpecProblem(file, line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
        ) from None
    problems: list[SpecProblem] = []
    reader = _Reader(file, env, problems)
    lines = reader.lines
    data = reader.read(node, ()) if node is not None else {}
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(file, 1, "a spec is a mapping with datasets, jobs and pools")])

    def line_of(path: Path) -> int:
        for n in range(len(path), -1, -1):
            if path[:n] in lines:
                return lines[path[:n]]
        return 1

    spec, schema, doubt = assemble(data, base_dir)
    seen: set[tuple[int, str]] = set()
    for loc, message in schema:
        located = _known_prefix(loc, lines)
        where = ".".join(map(_shown, located))
        key = (line_of(located), where)
        if key in seen:  # a union reports each alternative; one message per place is enough
            continue
        seen.add(key)
        problems.append(SpecProblem(file, key[0], f"{where}: {message}"))
    problems.extend(SpecProblem(file, line_of(p), m) for p, m in spec.problems(doubt=doubt))
    if problems:
        raise SpecError(sorted(problems, key=lambda p: p.line))
    return spec


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _Loader(yaml.SafeLoader):
    """The safe loader, stopping at MAX_DEPTH levels of nesting before its recursion would."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _shown(step: str | int) -> str:
    """A step of a path as a message shows it: a name with a NUL or a control character quoted,
    one of hundreds of characters cut short (its problem may be that it is too long)."""
    text = str(step)
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _known_prefix(loc: Path, lines: dict[Path, int]) -> Path:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return loc[:n]
    return loc[:1]


class _Reader:
    """Turns the composed YAML into plain data, noting each path's line and every problem:
    duplicate keys, unset ${VARS}, values no safe loader can read (an unknown or malformed
    tag), keys that are lists or mappings, and an alias that contains itself."""

    def __init__(self, file: str, env: Mapping[str, str], problems: list[SpecProblem]) -> None:
        self.file, self.env, self.problems = file, env, problems
        self.lines: dict[Path, int] = {}
        self._open: set[int] = set()  # the nodes being read (an alias into one of them loops)
        self._left = MAX_VALUES  # aliases can make a small file expand without bound

    def problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(SpecProblem(self.file, node.start_mark.line + 1, message))

    def read(self, node: yaml.Node, path: Path) -> Any:
        self.lines[path] = node.start_mark.line + 1
        self._left -= 1
        if self._left < 0:
            too_many = f"more than {MAX_VALUES:,} values (aliases?)"
            raise SpecError([SpecProblem(self.file, self.lines[path], too_many)])
        if len(path) > MAX_DEPTH:  # aliases into aliases nest deeper than the text does
            too_deep = f"nested too deeply (more than {MAX_DEPTH} levels)"
            raise SpecError([SpecProblem(self.file, self.lines[path], too_deep)])
        if id(node) in self._open:
            self.problem(node, "an alias that contains itself")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.read(v, path + (i,)) for i, v in enumerate(node.value)]
            return self._value(node)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, "a key is a plain value, not a list or a mapping")
                continue
            key = self._scalar(key_node)
            if key in out:
                self.problem(key_node, f"duplicate key {key!r}")
            out[key] = self.read(value_node, path + (key,))
            self.lines[path + (key,)] = key_node.start_mark.line + 1
        return out

    def _value(self, node: yaml.Node) -> Any:
        value = self._scalar(node)
        if isinstance(value, str) and "${" in value:

            def substitute(m: re.Match[str]) -> str:
                name, default = m.group(1), m.group(2)
                if name in self.env:
                    return self.env[name]
                if default is not None:
                    return default
                self.problem(node, f"environment variable {name} is not set")
                return ""

            value = _ENV.sub(substitute, value)
        return value

    def _scalar(self, node: yaml.Node) -> Any:
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
            self.problem(node, f"cannot read {node.value!r} as {node.tag}: {getattr(exc, 'problem', exc)}")
            return None
        finally:
            loader.dispose()
