"""The pipeline graph as inline SVG, laid out on the server: no layout library, no network.

Datasets and jobs are nodes, inputs and outputs are edges. Each node goes to the layer after
its deepest predecessor (longest path from the sources); within a layer, nodes are ordered by
the mean position of their predecessors, one pass, which keeps a pipeline's usual fan-in and
fan-out readable. Job nodes carry their state for the chosen partition as a class and data-*
attributes, so the page (and a test) can find "the failed run of load".
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from coordinator.spec.models import PipelineSpec

COL_W, ROW_H, NODE_W, NODE_H, PAD = 200, 64, 160, 38, 20


@dataclass(frozen=True)
class JobState:
    state: str  # a run state, or "waiting" (some inputs) / "idle" (none)
    run_id: str | None = None
    took_s: float | None = None  # the run's duration (so far, while it runs)


def layers(spec: PipelineSpec) -> list[list[str]]:
    """Node ids ("d:<dataset>", "j:<job>") by layer, ordered within each layer."""
    preds: dict[str, list[str]] = {}
    nodes: list[str] = []

    def add(node: str) -> None:
        if node not in preds:
            preds[node] = []
            nodes.append(node)

    for ds in spec.datasets:
        add(f"d:{ds}")
    for name, job in spec.jobs.items():
        add(f"j:{name}")
        for inp in job.inputs:
            add(f"d:{inp.dataset}")
            preds[f"j:{name}"].append(f"d:{inp.dataset}")
        for ds in job.outputs:
            add(f"d:{ds}")
            preds[f"d:{ds}"].append(f"j:{name}")
    depth: dict[str, int] = {}

    def level(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node not in depth:
            depth[node] = 1 + max((level(p, seen | {node}) for p in preds[node] if p not in seen), default=-1)
        return depth[node]

    for node in nodes:
        level(node)
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for node, ps in preds.items():
        for p in ps:
            succs[p].append(node)
    for node in nodes:  # a source sits just before its first consumer, not in the first column
        if not preds[node] and succs[node]:
            depth[node] = max(0, min(depth[s] for s in succs[node]) - 1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in nodes:
        out[depth[node]].append(node)
    index: dict[str, float] = {}
    for layer in out:

        def key(node: str) -> float:
            ps = [index[p] for p in preds[node] if p in index]
            return sum(ps) / len(ps) if ps else float(nodes.index(node))

        layer.sort(key=key)
        for i, node in enumerate(layer):
            index[node] = i
    return out


def render_svg(spec: PipelineSpec, jobs: dict[str, JobState], complete: set[str]) -> str:
    """The graph; `jobs` maps job → its state, `complete` holds the datasets that are complete."""
    grid = layers(spec)
    pos: dict[str, tuple[int, int]] = {}
    for x, layer in enumerate(grid):
        for y, node in enumerate(layer):
            pos[node] = (PAD + x * COL_W, PAD + y * ROW_H)
    width = PAD * 2 + max(len(grid) - 1, 0) * COL_W + NODE_W
    height = PAD * 2 + max((len(layer) for layer in grid), default=1) * ROW_H
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="pipeline graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" /></marker></defs>',
    ]
    for name, job in spec.jobs.items():
        for inp in job.inputs:
            parts.append(_edge(pos[f"d:{inp.dataset}"], pos[f"j:{name}"]))
        for ds in job.outputs:
            parts.append(_edge(pos[f"j:{name}"], pos[f"d:{ds}"]))
    for node, (x, y) in pos.items():
        kind, name = node.split(":", 1)
        label = escape(name if len(name) <= 22 else name[:21] + "…")
        if kind == "j":
            st = jobs.get(name, JobState("idle"))
            run = f' data-run="{escape(st.run_id)}"' if st.run_id else ""
            parts.append(
                f'<g class="node job state-{escape(st.state)}" data-job="{escape(name)}" '
                f'data-state="{escape(st.state)}"{run} tabindex="0">'
                f"<title>{escape(name)}: {escape(st.state)}</title>"
                f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8" />'
                f'<text x="{x + NODE_W / 2}" y="{y + 16}">{label}</text>'
                f'<text class="sub" x="{x + NODE_W / 2}" y="{y + 31}">{escape(_sub(st))}</text></g>'
            )
        else:
            state = "complete" if name in complete else "missing"
            parts.append(
                f'<g class="node dataset state-{state}" data-dataset="{escape(name)}" data-state="{state}">'
                f"<title>{escape(name)}: {state}</title>"
                f'<rect x="{x}" y="{y + 4}" width="{NODE_W}" height="{NODE_H - 8}" rx="15" />'
                f'<text x="{x + NODE_W / 2}" y="{y + 24}">{label}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _sub(st: JobState) -> str:
    """The state, and the run's duration when it has one: 'succeeded · 4.2s', 'running · 3m05s'."""
    if st.took_s is None:
        return st.state
    s = st.took_s
    took = f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s" if s < 3600 else f"{s / 3600:.1f}h"
    return f"{st.state} · {took}"


def _edge(a: tuple[int, int], b: tuple[int, int]) -> str:
    x1, y1 = a[0] + NODE_W, a[1] + NODE_H / 2
    x2, y2 = b[0], b[1] + NODE_H / 2
    mid = (x1 + x2) / 2
    curve = f"M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}"
    return f'<path class="edge" d="{curve}" marker-end="url(#arrow)" />'
