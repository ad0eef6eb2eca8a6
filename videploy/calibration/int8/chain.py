"""Which whole graphs of an AdaFocusV3 chain stay in float: measured on the chain, not on the graph.

A graph can follow FP32 closely on its own outputs and still change what the chain decides. The
glance encoder's features feed the policy, which turns them into crop boxes; a feature that moves
by 0.5% moves a box by a pixel, the local encoder then sees another crop, and every later exit's
logits move with it. Each exit's entropy decides where a video stops, so the exit step is only as
stable as those logits (measured on the trained demo model: a per-exit logit cosine of 0.9993
keeps ~98% of exit steps, 0.984 only ~87%).

So for chains, after the per-graph analysis (:mod:`.sensitivity`), the INT8 graphs are judged by
what the chain does on *calibration* clips (held-out clips stay for the report): each trial runs
the chain through the runtime's own path with some graphs in INT8 and the rest in FP32, every
exit forced, and is scored by the lowest over exits of the mean over clips of the cosine between
INT8 and FP32 logits (per clip: a batch-wide cosine would let the confident clips hide the others).
A trial must also keep the chosen cubes: a graph upstream of the crops (glance, policy) that moves
a box by more than a pixel in more than ``1 - min_cubes`` of the clips fails, whatever the mean
cosine says -- a moved crop changes a clip's later logits wholesale, and such clips are too rare
for a mean over a few calibration clips to show (measured on the demo model: with the policy in
INT8 the calibration clips' mean cosine stayed at 0.9995 while the test split's fell to 0.996
and its exit steps agreed for only 94%).

If every graph in INT8 passes, nothing changes. Otherwise each graph is tried alone, and graphs
go back to float worst first until the rest pass. Each trial also records how often the exit step
agrees under the bundle's thresholds, when it has any (thresholds fitted on these very clips would
sit exactly on some clip's value and flip it at the slightest change). The trials are returned for
the manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from videploy.bundle.bundle import Bundle
from videploy.calibration.int8.videos import Clip

TrialBundle = Callable[[Sequence[str]], Bundle]  # roles in INT8 -> the bundle whose variants run exactly those


@dataclass(frozen=True)
class ChainTrial:
    quantized: tuple[str, ...]  # graph roles in INT8 (the rest FP32)
    score: float  # lowest over exits (and targets) of the mean per-clip logit cosine vs FP32
    worst_exit: int
    cube_agreement: float  # clips whose cubes are all identical (frames, boxes within BOX_TOLERANCE_PX)
    exit_step_agreement: float | None  # under the bundle's thresholds, if it has any

    def passes(self, min_score: float, min_cubes: float) -> bool:
        return self.score >= min_score and self.cube_agreement >= min_cubes


@dataclass(frozen=True)
class ChainSensitivity:
    target: float
    min_cubes: float
    clips: int
    trials: tuple[ChainTrial, ...]
    float_graphs: tuple[str, ...]  # whole graphs returned to float for the chain's sake

    def reason(self, role: str) -> str:
        full = self.trials[0]
        alone = next((t for t in self.trials if t.quantized == (role,)), None)
        moved = "" if alone is None else (
            f"; quantized alone it moved the chain's logits to cosine {alone.score:.5f} at exit {alone.worst_exit}"
            f" and kept the cubes of {alone.cube_agreement:.0%} of the clips"
        )
        return (
            f"with every graph in INT8 the chain's logits scored cosine {full.score:.5f} and the cubes held for {full.cube_agreement:.0%} "
            f"of {self.clips} calibration clip(s) (targets {self.target} and {self.min_cubes:.0%}){moved}: the whole graph stays in float"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chain_outcomes(bundle: Bundle, precision: str | None, clips: Sequence[Clip], batch_size: int) -> list[Any]:
    """Every clip through the runtime's chain on onnxruntime, every exit forced and kept."""
    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from videploy.runtime.exit_criteria import never_stops
    from videploy.runtime.recognizer import Recognizer

    ee = bundle.early_exit
    backend = OnnxRuntimeBackend(bundle, precision=precision)
    try:
        runner = Recognizer(bundle, backend=backend).adaptive
        never = [never_stops(ee.criterion)] * (ee.num_steps + 1)
        return list(runner.iter_run((c.frames for c in clips), thresholds=never, batch_size=batch_size, keep_exit_logits=True))
    finally:
        backend.close()


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` and ``b`` (..., classes), float64; two zero rows agree."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    dot = (a * b).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where((na == 0) & (nb == 0), 1.0, dot / (na * nb))
    return np.nan_to_num(cos, nan=0.0)


def exit_steps(logits: np.ndarray, thresholds: Sequence[float], criterion: str) -> np.ndarray:
    from videploy.calibration.exit_thresholds import simulate_exits
    from videploy.runtime.exit_criteria import criterion_values

    return simulate_exits(criterion_values(logits, criterion), thresholds, criterion)


def analyse_chain(
    trial_bundle: TrialBundle, roles: Sequence[str], targets: Sequence[str], clips: Sequence[Clip], batch_size: int, target: float, min_cubes: float
) -> ChainSensitivity:
    """Decide which of ``roles`` (graphs with an INT8 form) stay wholly in float so the chain passes."""
    from videploy.calibration.int8.agreement import same_cubes

    roles = list(roles)
    if not roles or not clips:
        return ChainSensitivity(target, min_cubes, len(clips), (), ())
    first = trial_bundle([])
    ee = first.early_exit
    reference = chain_outcomes(first, None, clips, batch_size)
    ref_logits = np.stack([o.exit_logits for o in reference])
    steps = None if ee.thresholds is None else exit_steps(ref_logits, ee.thresholds, ee.criterion)
    trials: list[ChainTrial] = []

    def run(quantized: Sequence[str]) -> ChainTrial:
        bundle = trial_bundle(quantized)
        worst: ChainTrial | None = None
        for t in targets:
            got = chain_outcomes(bundle, t, clips, batch_size)
            logits = np.stack([o.exit_logits for o in got])
            per_exit = row_cosines(ref_logits, logits).mean(axis=0)
            k = int(np.argmin(per_exit))
            cubes = float(np.mean([same_cubes(a.cubes, b.cubes) for a, b in zip(reference, got)]))
            agree = None if steps is None else float(np.mean(exit_steps(logits, ee.thresholds, ee.criterion) == steps))
            trial = ChainTrial(tuple(quantized), float(per_exit[k]), k, cubes, agree)
            worst = trial if worst is None or (trial.score, trial.cube_agreement) < (worst.score, worst.cube_agreement) else worst
        assert worst is not None
        trials.append(worst)
        return worst

    if run(roles).passes(target, min_cubes):
        return ChainSensitivity(target, min_cubes, len(clips), tuple(trials), ())
    alone = {r: run([r]) for r in roles} if len(roles) > 1 else {roles[0]: trials[0]}
    floats: list[str] = []
    # failing graphs first, then the lowest score
    for role in sorted(roles, key=lambda r: (alone[r].passes(target, min_cubes), alone[r].score, alone[r].cube_agreement)):
        floats.append(role)
        rest = [r for r in roles if r not in floats]
        if not rest:
            break
        # a single remaining graph was measured already, alone
        trial = alone[rest[0]] if len(rest) == 1 else run(rest)
        if trial.passes(target, min_cubes):
            break
    return ChainSensitivity(target, min_cubes, len(clips), tuple(trials), tuple(floats))
