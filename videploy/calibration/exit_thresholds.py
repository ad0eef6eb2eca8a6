"""AdaFocusV3 exit thresholds under an average compute budget (paper Eq. 7), numpy only.

Eq. 7 asks for thresholds eta_t that maximise accuracy subject to the average GFLOPs per video
staying within a budget B. The official code (Uni-AdaFocus ``ops/early_exit_uni_adafocus.py``,
after MSDNet) solves it without labels in the inner step: it fixes the *fraction of videos that
leave at each exit* to a geometric distribution ``p_t ∝ q^t`` and, on a held-out set, sets eta_t so
that exactly ``floor(N * p_t)`` of the videos still running — the most confident ones — stop at
exit t. Varying ``q`` traces the accuracy / GFLOPs curve; the last exit takes everyone left.

Here the criterion is the entropy of the softmax (lower = more confident; a video stops at exit
t when ``entropy_t <= eta_t``). :func:`thresholds_for_budget` scans ``q`` (including ``q > 1``,
which puts the mass on late exits, so every budget up to the full model is reachable) and keeps
the feasible solution that spends the most of the budget — without labels, more compute is the
best available proxy for accuracy. With labels, pick ``q`` by accuracy instead using
:func:`fit_thresholds` and :func:`simulate_exits` directly.

The thresholds should be fitted on a calibration set of videos like those in deployment and then
stored in the bundle; fitting them on the very videos being predicted (what ``videploy predict
--budget`` does) only demonstrates the mechanism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from videploy.errors import VideployError


@dataclass(frozen=True)
class BudgetSolution:
    thresholds: tuple[float, ...]  # eta_0 .. eta_T
    q: float | None  # geometric ratio of the exit distribution (None: all videos at one exit, or no early exit)
    expected_gflops: float  # average over the fitting videos
    exit_fractions: tuple[float, ...]  # realised fraction of videos leaving at each exit
    budget: float


def geometric_exit_distribution(q: float, num_exits: int) -> np.ndarray:
    """``p_t ∝ q^t`` for t = 0..num_exits-1, normalised (the official search's exit distribution)."""
    if not q > 0 or num_exits < 1:
        raise VideployError(f"a geometric exit distribution needs q > 0 and at least one exit, got q={q}, exits={num_exits}")
    t = np.arange(num_exits, dtype=np.float64)
    logp = t * math.log(q)
    p = np.exp(logp - logp.max())
    return p / p.sum()


def _check_entropies(entropies: np.ndarray) -> np.ndarray:
    e = np.asarray(entropies, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] < 1 or e.shape[1] < 1:
        raise VideployError(f"entropies must be (videos, exits) with at least one of each, got shape {e.shape}")
    if not np.isfinite(e).all():
        raise VideployError("entropies must be finite numbers")
    return e


def fit_thresholds(entropies: np.ndarray, exit_fractions: Sequence[float]) -> np.ndarray:
    """Thresholds that make ``floor(N * p_t)`` of the still-running videos stop at exit t.

    ``entropies`` (N, E): entropy of every video at every exit (from a run without early exits).
    Exit t's threshold lies between the entropy of the ``floor(N * p_t)``-th most confident video
    among those not assigned to an earlier exit and the next one's (the official code uses the
    former exactly; halfway leaves a margin for float rounding); an exit assigned no video gets
    ``-inf``; the last gets ``+inf``.
    """
    e = _check_entropies(entropies)
    n, num_exits = e.shape
    p = np.asarray(exit_fractions, dtype=np.float64)
    if p.shape != (num_exits,) or (p < 0).any() or p.sum() <= 0:
        raise VideployError(f"exit fractions must be {num_exits} non-negative numbers, got {list(p)}")
    p = p / p.sum()
    eta = np.full(num_exits, -math.inf)
    taken = np.zeros(n, dtype=bool)
    for t in range(num_exits - 1):
        count = math.floor(n * p[t])
        if count <= 0:
            continue
        order = np.argsort(e[:, t], kind="stable")
        remaining = order[~taken[order]]
        if remaining.size == 0:
            break
        count = min(count, remaining.size)
        last = e[remaining[count - 1], t]
        nxt = e[remaining[count], t] if count < remaining.size else math.inf
        # halfway to the next video instead of exactly at the last one (the official choice): the same
        # videos stop, with a margin against float rounding that differs between batch compositions
        eta[t] = (last + nxt) / 2 if last < nxt < math.inf else last + 1e-6 * max(1.0, abs(last))
        taken[remaining[:count]] = True
    eta[-1] = math.inf
    return eta


def simulate_exits(entropies: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """The exit each video takes under ``thresholds`` (the runtime's rule: first t with entropy_t <= eta_t)."""
    e = _check_entropies(entropies)
    eta = np.asarray(thresholds, dtype=np.float64)
    if eta.shape != (e.shape[1],):
        raise VideployError(f"need {e.shape[1]} thresholds, got {eta.size}")
    stop = e <= eta[None, :]
    stop[:, -1] = True  # the last exit always stops
    return stop.argmax(axis=1)


def expected_gflops(entropies: np.ndarray, thresholds: Sequence[float], exit_gflops: Sequence[float]) -> float:
    """Average GFLOPs per video under ``thresholds`` (``exit_gflops`` cumulative per exit)."""
    cost = np.asarray(exit_gflops, dtype=np.float64)
    exits = simulate_exits(entropies, thresholds)
    if cost.shape != (np.asarray(entropies).shape[1],):
        raise VideployError(f"exit_gflops must list one cost per exit ({np.asarray(entropies).shape[1]}), got {cost.size}")
    return float(cost[exits].mean())


def thresholds_for_budget(
    entropies: np.ndarray,
    exit_gflops: Sequence[float],
    budget: float,
    qs: Sequence[float] | None = None,
) -> BudgetSolution:
    """Eq. 7 without labels: the geometric-distribution thresholds spending the most GFLOPs within ``budget``."""
    e = _check_entropies(entropies)
    cost = np.asarray(exit_gflops, dtype=np.float64)
    num_exits = e.shape[1]
    if cost.shape != (num_exits,):
        raise VideployError(f"exit_gflops must list one cost per exit ({num_exits}), got {cost.size}")
    if not math.isfinite(budget) or budget < cost[0]:
        raise VideployError(
            f"a budget of {budget:g} GFLOPs per video is below the cheapest exit (the glance, {cost[0]:.4g} GFLOPs); "
            f"choose --budget between {cost[0]:.4g} and {cost[-1]:.4g}"
        )

    def solution(eta: np.ndarray, q: float | None) -> BudgetSolution:
        exits = simulate_exits(e, eta)
        frac = np.bincount(exits, minlength=num_exits) / e.shape[0]
        return BudgetSolution(tuple(float(x) for x in eta), q, float(cost[exits].mean()), tuple(float(f) for f in frac), float(budget))

    if budget >= cost[-1]:
        return solution(np.full(num_exits, -math.inf), None)  # enough for every step: no early exit
    glance_only = np.full(num_exits, math.inf)
    best = solution(glance_only, None)  # always feasible
    grid = list(np.geomspace(1e-3, 1e3, 241)) + [k / 20 for k in range(1, 20)] if qs is None else list(qs)
    candidates = [(geometric_exit_distribution(float(q), num_exits), float(q)) for q in grid]
    # every video at one exit: what a geometric distribution cannot express on a handful of videos
    candidates += [(np.eye(num_exits)[t], None) for t in range(num_exits)]
    for p, q in candidates:
        s = solution(fit_thresholds(e, p), q)
        if s.expected_gflops <= budget + 1e-12 and s.expected_gflops > best.expected_gflops:
            best = s
    return best
