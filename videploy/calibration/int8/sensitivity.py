"""Which parts of a graph stay in float: found by measurement, one group of layers at a time.

For each graph the whole graph is quantized first and its outputs compared with FP32 on the
calibration inputs the graph really receives (:func:`graph_score`: the lowest cosine similarity
over its float outputs, and for integer outputs -- AdaFocusV3's chosen frames -- the fraction that
is identical). If that meets the target, everything is quantized. Otherwise the graph's weighted
layers are cut into groups in graph order (the first layer, which sees raw pixels; contiguous
blocks of the body; the last layer, usually the classifier), each group is quantized *alone*
and scored, and the groups are returned to float worst first until the graph meets the target
(every group, if it must: then the graph stays in float). Each group returned to float is then
narrowed by halves (keep in float only the half that still meets the target; when both halves
matter, narrow each with the other in float), so what stays in float is as few layers as the
measurement allows. The measurements and the decision are
returned as a :class:`GraphSensitivity` for the manifest.

Held-out clips are never used here: they are kept for the agreement report.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from videploy.calibration.int8.quantize import weighted_nodes

log = logging.getLogger(__name__)

Quantizer = Callable[[Sequence[str], Path], Path]  # (nodes to keep in float, output path) -> quantized graph


@dataclass(frozen=True)
class Group:
    name: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class GroupScore:
    group: str
    nodes: int
    score: float  # the graph's score with only this group quantized


@dataclass(frozen=True)
class GraphSensitivity:
    graph: str
    target: float
    full_score: float  # everything quantized
    final_score: float  # with the float groups excluded
    groups: tuple[GroupScore, ...] = ()  # measured only when the full graph missed the target
    float_groups: tuple[str, ...] = ()
    float_nodes: tuple[str, ...] = ()
    quantized_any: bool = True  # False: every group had to stay in float, the graph is FP32
    chain_reason: str | None = None  # set when the chain analysis (:mod:`.chain`) returned the whole graph to float

    def reason(self) -> str:
        if self.chain_reason is not None:
            return self.chain_reason
        if not self.quantized_any and not self.groups:
            return "kept in float as asked (--keep-float)"
        if math.isnan(self.full_score):
            return "fully quantized (sensitivity analysis off)"
        if not self.float_nodes:
            return f"fully quantized: score {self.full_score:.5f} >= target {self.target}"
        worst = ", ".join(f"{g.group} ({g.score:.5f})" for g in sorted(self.groups, key=lambda g: g.score)[: len(self.float_groups)])
        if not self.quantized_any:
            return f"quantizing everything scored {self.full_score:.5f} < target {self.target}, and so did every partial quantization: the graph stays FP32 ({worst})"
        return (
            f"quantizing everything scored {self.full_score:.5f} < target {self.target}; quantized alone, {worst} scored lowest; "
            f"narrowed by halves, {'; '.join(self.float_groups)} stay in float (score now {self.final_score:.5f})"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reason"] = self.reason()
        return d


def node_groups(model: Path, body_parts: int = 4) -> list[Group]:
    """The weighted layers of ``model`` in groups: first layer, ``body_parts`` body blocks, last layer."""
    nodes = weighted_nodes(model)
    if not nodes:
        return []
    if len(nodes) == 1:
        return [Group("only layer", tuple(nodes))]
    groups = [Group(f"first layer ({nodes[0]})", (nodes[0],))]
    body = nodes[1:-1]
    if body:
        k = min(body_parts, len(body))
        for i, chunk in enumerate(np.array_split(np.arange(len(body)), k)):
            lo, hi = int(chunk[0]), int(chunk[-1])
            groups.append(Group(f"layers {lo + 2}-{hi + 2} of {len(nodes)}", tuple(body[lo : hi + 1])))
    groups.append(Group(f"last layer ({nodes[-1]})", (nodes[-1],)))
    return groups


def graph_score(reference: Path, candidate: Path, feeds: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Lowest agreement over the graph's outputs on ``feeds``: cosine for floats, identical fraction for integers."""
    import onnxruntime as ort

    ref = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    got = ort.InferenceSession(str(candidate), providers=["CPUExecutionProvider"])
    names = [o.name for o in ref.get_outputs()]
    refs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    gots: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for n, a, b in zip(names, ref.run(names, dict(feed)), got.run(names, dict(feed))):
            refs[n].append(np.asarray(a))
            gots[n].append(np.asarray(b))
    scores = [output_score(np.concatenate(refs[n]), np.concatenate(gots[n])) for n in names]
    return float(min(scores)) if scores else 1.0


def output_score(ref: np.ndarray, got: np.ndarray) -> float:
    if not np.issubdtype(ref.dtype, np.floating):
        return float(np.mean(ref == got)) if ref.size else 1.0
    return cosine(ref, got)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0 and ny == 0:
        return 1.0
    if nx == 0 or ny == 0:
        return 0.0
    return float(np.dot(x, y) / (nx * ny))


def analyse(
    role: str,
    model: Path,
    quantize: Quantizer,
    feeds: Sequence[Mapping[str, np.ndarray]],
    workdir: Path,
    target: float,
    body_parts: int = 4,
) -> GraphSensitivity:
    """Decide which groups of ``model`` stay in float so the quantized graph scores >= ``target``."""
    workdir.mkdir(parents=True, exist_ok=True)
    groups = node_groups(model, body_parts)
    all_nodes = [n for g in groups for n in g.nodes]
    full = graph_score(model, quantize([], workdir / "full.onnx"), feeds)
    log.info("graph '%s' fully quantized: score %.5f (target %s)", role, full, target)
    if full >= target or not groups:
        return GraphSensitivity(role, target, full, full)
    scored = []
    for i, g in enumerate(groups):
        keep_float = [n for n in all_nodes if n not in set(g.nodes)]
        s = graph_score(model, quantize(keep_float, workdir / f"group{i}.onnx"), feeds)
        log.info("graph '%s', only %s quantized: score %.5f", role, g.name, s)
        scored.append(GroupScore(g.name, len(g.nodes), s))
    order = sorted(range(len(groups)), key=lambda i: scored[i].score)
    excluded: list[int] = []
    final = full
    for i in order:
        excluded.append(i)
        if len(excluded) == len(groups):
            final = 1.0  # nothing quantized: the FP32 graph
            break
        floats = [n for j in excluded for n in groups[j].nodes]
        final = graph_score(model, quantize(floats, workdir / f"exclude{len(excluded)}.onnx"), feeds)
        log.info("graph '%s' with %s in float: score %.5f", role, [groups[j].name for j in excluded], final)
        if final >= target:
            break
    if len(excluded) == len(groups):
        return GraphSensitivity(role, target, full, final, tuple(scored), tuple(groups[j].name for j in excluded), tuple(all_nodes), quantized_any=False)
    # narrow each float group down by halves while the graph still meets the target
    kept = {j: list(groups[j].nodes) for j in excluded}
    counter = iter(range(1_000_000))

    def meets(floats: list[str]) -> float | None:
        s = graph_score(model, quantize(floats, workdir / f"narrow{next(counter)}.onnx"), feeds)
        return s if s >= target else None

    def narrow(nodes: list[str], others: list[str]) -> list[str]:
        """The fewest of ``nodes`` (found by halving) that, with ``others``, keep the graph at the target."""
        if len(nodes) <= 1:
            return nodes
        half = len(nodes) // 2
        a, b = nodes[:half], nodes[half:]
        for part in (b, a):  # later layers first: they tend to be the sensitive ones
            if meets(others + part) is not None:
                return narrow(part, others)
        # both halves matter: narrow each with the other (already narrowed) in float
        a = narrow(a, others + b)
        return a + narrow(b, others + a)

    for j in excluded:
        others = [n for k in excluded if k != j for n in kept[k]]
        kept[j] = narrow(kept[j], others)
    final_floats = [n for j in excluded for n in kept[j]]
    final = graph_score(model, quantize(final_floats, workdir / "final.onnx"), feeds)
    float_nodes = tuple(n for j in excluded for n in kept[j])
    names = tuple(_span_name(all_nodes, kept[j]) for j in excluded)
    return GraphSensitivity(role, target, full, final, tuple(scored), names, float_nodes, quantized_any=True)


def _span_name(all_nodes: Sequence[str], nodes: Sequence[str]) -> str:
    """``"layer 7 of 54 (node_Conv_12)"``, ``"layers 41-44 of 54"`` or ``"layers 41, 47-48 of 54"`` (positions among the weighted layers)."""
    pos = sorted(all_nodes.index(n) + 1 for n in nodes)
    if len(pos) == 1:
        return f"layer {pos[0]} of {len(all_nodes)} ({nodes[0]})"
    runs: list[list[int]] = []
    for p in pos:
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    text = ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
    return f"layers {text} of {len(all_nodes)}"
