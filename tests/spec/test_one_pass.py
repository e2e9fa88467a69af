"""A spec with many mistakes: every one is reported in one pass, on the line of the key at fault.

Schema problems (a field that does not fit, a typo'd key) and cross-field ones (unknown input,
cycle, two producers, mapping, pool, kind, kind settings) come together, sorted by line; a part
that did not validate does not make the cross checks invent problems of their own.
"""

from __future__ import annotations

import contextlib
import copy
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coordinator.errors import SpecError
from coordinator.spec import parse_spec

MISTAKES = """\
datasets:
  raw.a: {partitioning: daily}
  raw.h: {partitioning: hourly}
  raw.w: {partitioning: weekly}
  raw.t: {partitionning: daily}
  out.x: {partitioning: hourly}
  raw.a: {partitioning: daily}
pools:
  spark: 0
  gpu: many
  io: 2
jobz: {}
jobs:
  j1:
    kind: command
    inputs: [raw.a, raw.missing]
    outputs: [mid]
    tigger: all
    settings: {command: x}
  j2:
    kind: command
    inputs: [{dataset: raw.a, mapping: {window: hourly}}]
    outputs: [mid]
    retries: {max_attempts: 0}
    settings: {command: x}
  j3:
    kind: command
    inputs: [mid, loop, {dataset: raw.a, mapping: sideways}]
    outputs: [loop2]
    settings: {command: x, colour: blue}
  j4:
    pool: spark
    kind: command
    inputs: [loop2]
    outputs: [loop]
    timeout_s: -1
    settings: {command: x}
  j5:
    kind: teleport
    inputs: [raw.a]
    outputs: [out.x]
    pool: nosuch
    settings: {command: "${NOPE}"}
  j6:
    kind: command
    inputs: [raw.w, raw.a]
    outputs: [six]
    contract: {raw.zz: [{name: a, type: long}]}
    deadline: "25:99"
    settings: {}
  j7:
    kind: spark
    inputs: [raw.h]
    outputs: [seven]
    partitioning: none
    deadline: "06:00"
    settings: {application: jobs.user_features, deploy_mode: cluster, master: "local[2]"}
"""

# line → what its problem says (and nothing is reported on any other line)
EXPECTED = {
    4: "datasets.raw.w.partitioning: Input should be 'daily', 'hourly' or 'none'",
    5: "datasets.raw.t.partitionning: Extra inputs are not permitted (did you mean 'partitioning'?)",
    7: "duplicate key 'raw.a'",
    9: "pools.spark: a pool must allow at least 1 run, not 0",
    10: "pools.gpu: Input should be a valid integer",
    12: "jobz: Extra inputs are not permitted (did you mean 'jobs'?)",
    16: "job 'j1': unknown dataset 'raw.missing'",
    18: "jobs.j1.tigger: Extra inputs are not permitted (did you mean 'trigger'?)",
    22: "mapping {window: hourly} needs an hourly input and a daily job, not a daily input",
    23: "dataset 'mid' is produced by two jobs: 'j1' and 'j2'",
    24: "jobs.j2.retries.max_attempts: Input should be greater than or equal to 1",
    26: "cycle: j3 → j4 → j3",
    28: "jobs.j3.inputs.2.mapping: Input should be 'same' or 'latest'",
    30: "job 'j3', settings colour: Extra inputs are not permitted",
    36: "jobs.j4.timeout_s: Input should be greater than 0",
    39: "job 'j5': unknown kind 'teleport' (known: command, ",
    40: "job 'j5', input 'raw.a': mapping 'same' needs the input partitioned like the job: "
    "input is daily, job is hourly",
    42: "job 'j5': unknown pool 'nosuch'",
    43: "environment variable NOPE is not set",
    48: "job 'j6': contract names 'raw.zz', not an input",
    49: "jobs.j6.deadline: String should match pattern",
    50: "job 'j6', settings: command is required",
    53: "job 'j7', input 'raw.h': mapping 'same' needs the input partitioned like the job: "
    "input is hourly, job is none",
    56: "job 'j7': a deadline needs a daily or hourly job, not none",
    57: "job 'j7', settings: deploy_mode cluster needs a cluster master, not local[2]",
}


def test_every_mistake_in_one_pass_on_its_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(MISTAKES, "p.yaml", env={})
    problems = info.value.problems
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    found = {p.line: p.message for p in problems}
    assert len(problems) == len(found), [str(p) for p in problems]  # one problem per line here
    assert set(found) == set(EXPECTED), [str(p) for p in problems]
    for line, text in EXPECTED.items():
        assert text in found[line], (line, found[line])
    assert len(EXPECTED) >= 15


DAILY_A = "datasets: {a: {partitioning: daily}}\njobs:\n"
READS_B = "  k: {kind: command, inputs: [b], settings: {command: x}}\n"


def test_a_part_that_does_not_validate_invents_no_other_problem() -> None:
    cases = [
        # a job without a kind still produces its output for the job after it
        (DAILY_A + "  j: {inputs: [a], outputs: [b], settings: {command: x}}\n" + READS_B,
         {3: "jobs.j: kind is required"}),
        # a job partitioning that does not validate: its consumer's deadline is not judged on a guess
        ("datasets: {m: {partitioning: none}}\njobs:\n"
         "  j: {kind: command, partitioning: weekly, inputs: [{dataset: m, mapping: latest}], outputs: [b],"
         " settings: {command: x}}\n"
         "  k: {kind: command, inputs: [b], deadline: '01:00', settings: {command: x}}\n",
         {3: "jobs.j.partitioning"}),
        # settings that are not a mapping are one problem, not also "command: Field required"
        ("jobs:\n  j: {kind: command, settings: [1]}\n",
         {2: "jobs.j.settings: Input should be a valid dictionary"}),
        # a job with a field that does not fit keeps its outputs for the jobs that read them
        (DAILY_A + "  j: {kind: command, inputs: [a], outputs: [b], retries: 5,"
         " settings: {command: x}}\n" + READS_B,
         {3: "jobs.j.retries"}),
        ("jobs: [1, 2]\n", {1: "jobs: should be a mapping of names to definitions"}),
    ]
    for text, expected in cases:
        with pytest.raises(SpecError) as info:
            parse_spec(text, "p.yaml", env={})
        found = {p.line: p.message for p in info.value.problems}
        assert set(found) == set(expected), (text, found)
        for line, fragment in expected.items():
            assert fragment in found[line], (text, found)


def test_a_cycle_of_undeclared_datasets_is_reported_not_a_crash() -> None:
    with pytest.raises(SpecError, match="cycle: a → b → a"):
        parse_spec(
            "jobs:\n  a: {kind: command, inputs: [x], outputs: [y], settings: {command: t}}\n"
            "  b: {kind: command, inputs: [y], outputs: [x], settings: {command: t}}\n",
            "p.yaml",
            env={},
        )


def test_coord_validate_prints_every_problem(tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(MISTAKES)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "coord"), "validate", str(spec)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "300", "HOME": str(tmp_path)},
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(f"{spec}:")]
    assert [int(line.split(":")[1]) for line in lines] == sorted(EXPECTED), done.stdout
    assert f"{len(EXPECTED)} problem(s) in {spec}" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_typo_names_the_key_it_resembles_at_every_depth() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(
            "datasets:\n  a: {columns: [{name: x, typ: long}]}\njobs:\n  j:\n    kind: command\n"
            "    retries: {max_atempts: 2}\n    inputs: [{dataset: a, mapin: same}]\n"
            "    settings: {comand: x}\n",
            "p.yaml",
            env={},
        )
    said = [str(p) for p in info.value.problems]
    assert said == [
        "p.yaml:2: datasets.a.columns.0: type is required",
        "p.yaml:2: datasets.a.columns.0.typ: Extra inputs are not permitted (did you mean 'type'?)",
        "p.yaml:6: jobs.j.retries.max_atempts: Extra inputs are not permitted (did you mean 'max_attempts'?)",
        "p.yaml:7: jobs.j.inputs.0.mapin: Extra inputs are not permitted (did you mean 'mapping'?)",
        "p.yaml:8: job 'j', settings: command is required",
        "p.yaml:8: job 'j', settings comand: Extra inputs are not permitted (did you mean 'command'?)",
    ]


# ten values, ten of those, ... seven times over: ten million values from eight short lines
ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("a: !!python/name:os.system\n", "p.yaml:1: cannot read '' as tag:yaml.org,2002:python/name:"),
        ("jobs: !!binary abc\n", "p.yaml:1: cannot read 'abc' as tag:yaml.org,2002:binary: failed to decode"),
        ("jobs: !!timestamp nope\n", "p.yaml:1: cannot read 'nope' as tag:yaml.org,2002:timestamp"),
        ("jobs: &a [*a]\n", "p.yaml:1: an alias that contains itself"),
        ("datasets: {? [a, b] : 1}\n", "p.yaml:1: a key is a plain value, not a list or a mapping"),
        ("datasets: {1: {partitioning: daily}}\n", "p.yaml:1: datasets.1: a name is text, not 1"),
        ("pools: {1: 2}\n", "p.yaml:1: pools.1: Input should be a valid string"),
        (ALIAS_BOMB, "p.yaml:1: more than 1,000,000 values (aliases?)"),
    ],
)
def test_yaml_a_safe_loader_cannot_read_is_a_problem_not_a_crash(text: str, said: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "p.yaml", env={})
    assert any(str(p).startswith(said) for p in info.value.problems), [str(p) for p in info.value.problems]


def test_any_value_anywhere_is_a_problem_never_a_crash() -> None:
    """Values of every shape put at random places of two specs (fixed seed): a SpecError each time."""
    from tests.spec.test_loader import GOOD

    rng = random.Random(7)
    shapes = [None, 5, -1, 0, "x", "", [], {}, [1], {"a": 1}, True, 1.5, "daily", "${NOPE}", {1: 2}, [None]]
    for base in (GOOD, MISTAKES):
        data = yaml.safe_load(base)
        places = [p for p in _places(data) if p]
        for _ in range(200):
            mutated = copy.deepcopy(data)
            for _ in range(rng.randint(1, 3)):
                _put(mutated, rng.choice(places), rng.choice(shapes))
            if rng.random() < 0.2:
                mutated[rng.choice([1, None, True, "jobs", "datasets", "pools"])] = rng.choice(shapes)
            text = yaml.safe_dump(mutated)
            with contextlib.suppress(SpecError):  # anything else fails the test
                parse_spec(text, "p.yaml", env={"SECRET_TOKEN": "t"})


def _places(node: object, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _places(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _places(value, path + (i,))
    return found


def _put(node: object, path: tuple, value: object) -> None:
    try:
        for step in path[:-1]:
            node = node[step]  # type: ignore[index]
        node[path[-1]] = value  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        pass  # an earlier change removed the place


def test_a_chain_thousands_of_jobs_deep_loads_and_a_cycle_in_it_is_found() -> None:
    n = 2500  # deeper than Python's recursion limit: the checks walk it without recursing
    jobs = "".join(
        f"  j{i}: {{kind: command, inputs: [d{i}], outputs: [d{i + 1}], settings: {{command: x}}}}\n"
        for i in range(n)
    )
    spec = parse_spec(f"datasets: {{d0: {{partitioning: hourly}}}}\njobs:\n{jobs}", "p.yaml", env={})
    assert spec.job_partitioning(f"j{n - 1}") == "hourly" and spec.partitioning(f"d{n}") == "hourly"
    looped = jobs.replace("inputs: [d0]", f"inputs: [d{n}]")
    with pytest.raises(SpecError, match=r"cycle: j0 → j1 → .* → j2499 → j0"):
        parse_spec(f"jobs:\n{looped}", "p.yaml", env={})
