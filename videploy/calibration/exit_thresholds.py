"""AdaFocusV3 exit thresholds: the one threshold fitter, and its label-free budget search (paper Eq. 7).

The rule, as the official dynamic evaluation applies it (Uni-AdaFocus
``ops/early_exit_uni_adafocus.py``, after MSDNet), restated:

* Criterion, per exit, from that exit's raw logits: the entropy of the softmax (the official code
  uses its negation ``sum(p log p)``, higher = more confident) or the largest logit.
* Exit fractions: for a ratio ``q`` (1/20 .. 19/20) the share of videos meant to leave at exit t
  (t = 0 the glance, ..., E-1 the last) is ``p_t = q^t / sum_s q^s``. The official code evaluates
  this in float32 (``exp(t * log q)``, divided by its sum, and divided by the sum once more inside
  the fitter) and the count ``floor(N * p_t)`` in float32 too. Because ``N * p_t`` is often within
  a rounding error of an integer (``q = k/20`` with N a multiple of 20), this matters: a correctly
  rounded float32 evaluation gives a different count for 1 in 200 to 1 in 1000 (q, N) pairs, so
  :func:`official_exit_fractions` repeats PyTorch's own float32 values.
* Fitting, exit by exit for t = 0 .. E-2, over the N fitting videos (N = all of them, not those
  left): rank the videos not yet assigned to an earlier exit from most to least confident at exit
  t (a descending sort; ties keep input order); if
  ``n_t = floor(N * p_t)`` is positive, eta_t is the criterion value of the n_t-th of them (1-based:
  exactly at that video's value, no margin) and those n_t videos are assigned to exit t; if n_t is
  0, no video may stop at exit t (eta_t = "never"). The last exit takes everyone left ("always").
  Videos assigned to earlier exits are removed before ranking the next exit; nothing else is.
* Evaluation on other videos: each video leaves at the first exit t whose criterion passes its
  threshold (ties pass: entropy <= eta, max logit >= eta); its prediction is that exit's logits and
  its cost that exit's cumulative GFLOPs. Accuracy is top-1 over the videos; GFLOPs the mean of
  those costs. The official random-exit baseline sends the same number of videos to each exit,
  picking them at random.

The criterion values come from :func:`videploy.runtime.exit_criteria.criterion_values` (float64 from
the logits), the very function the runtime uses to stop a video, so a fitted eta_t stops the same
videos at run time. Official thresholds are float32 values of a float32 criterion; here they are the
float64 values of the same formula, so the exits can differ from the official ones only for a video
whose float32 criterion ties another one's within float32 rounding (none in the tests), and where
the official float32 entropy is NaN (a probability underflows to 0 once logits differ by ~100; the
official code cannot evaluate such videos), which float64 keeps finite. Exactly tied values at a
cut (duplicated videos, quantized logits) are taken in input order here; PyTorch's default sort
orders ties in no specified way, so which of them the official code takes, and with it the later
exits' counts, can differ there.

Without labels (``videploy predict --budget``, the benchmark), :func:`fit_exit_thresholds` scans
:func:`budget_candidates` (``q`` also > 1, which puts the mass on late exits, distributions cut off
at each exit, one-hot ones: every budget up to the full model is reachable), refines ``q`` where the
cost crosses the budget, and keeps the feasible solution that spends the most of the budget: without
labels more compute is the best available proxy for accuracy. With labels, :mod:`videploy.calibration.dynamic_evaluation`
picks by held-out accuracy. Thresholds fitted on the very videos being predicted only demonstrate the
mechanism; fit them on a calibration set like the deployment videos and store them in the bundle.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from videploy.errors import VideployError
from videploy.runtime.exit_criteria import (
    always_stops,
    check_criterion,
    criterion_values,
    most_confident_first,
    never_stops,
    stops,
)

# the official search's ratios q = 1/20 .. 19/20
OFFICIAL_QS: tuple[float, ...] = tuple(k / 20 for k in range(1, 20))


@dataclass(frozen=True)
class BudgetSolution:
    thresholds: tuple[float, ...]  # eta_0 .. eta_T
    q: float | None  # geometric ratio of the exit distribution (None: all videos at one exit, or no early exit)
    expected_gflops: float  # average over the fitting videos
    exit_fractions: tuple[float, ...]  # realised fraction of videos leaving at each exit
    budget: float
    criterion: str = "entropy"


def geometric_exit_distribution(q: float, num_exits: int) -> np.ndarray:
    """``p_t ∝ q^t`` for t = 0..num_exits-1, normalised, in float64 (any q > 0, also q > 1)."""
    if not q > 0 or num_exits < 1:
        raise VideployError(f"a geometric exit distribution needs q > 0 and at least one exit, got q={q}, exits={num_exits}")
    t = np.arange(num_exits, dtype=np.float64)
    logp = t * math.log(q)
    p = np.exp(logp - logp.max())
    return p / p.sum()


def official_exit_fractions(q: float, num_exits: int) -> np.ndarray:
    """``p_t ∝ q^t`` in float32, operation by operation as the official evaluation computes it (0 < q <= 1).

    The official search takes ``exp(t * log q)`` with PyTorch's float32 exp / log and divides by
    their float32 sum (the fitter divides once more: :func:`fit_thresholds`). Those float32 values
    decide ``floor(N * p_t)`` whenever ``N * p_t`` is within a rounding error of an integer, which
    ``q = k/20`` makes common, so they are reproduced: the exponentials of the official q's (up to
    64 exits) are PyTorch's own values (``official_exit_exp.npy``, x86 CPU build), other q's are
    rounded correctly from float64, and sums follow PyTorch's CPU summation order.
    """
    if not 0 < q <= 1 or num_exits < 1:
        raise VideployError(f"the official exit distribution needs 0 < q <= 1 and at least one exit, got q={q}, exits={num_exits}")
    table = _official_exp_table()
    k = round(q * 20)
    if abs(q - k / 20) < 1e-12 and 1 <= k <= 19 and num_exits <= table.shape[1]:
        p = table[k - 1, :num_exits].copy()
    else:
        log_q = np.float32(math.log(float(np.float32(q))))
        p = np.exp((log_q * np.arange(num_exits, dtype=np.float32)).astype(np.float64)).astype(np.float32)
    return _normalised(p)


@functools.lru_cache(maxsize=1)
def _official_exp_table() -> np.ndarray:
    """(19, 64) float32: PyTorch's ``exp(t * log(float32(k / 20)))`` for k = 1..19, t = 0..63."""
    table = np.load(Path(__file__).with_name("official_exit_exp.npy"))
    table.setflags(write=False)
    return table


def _normalised(p: np.ndarray) -> np.ndarray:
    """``p / sum(p)`` in p's precision; a float32 sum in PyTorch's CPU order (float64: exact, rounded once)."""
    total = _torch_cpu_sum_f32(p) if p.dtype == np.float32 else math.fsum(p.tolist())
    return (p / p.dtype.type(total)).astype(p.dtype)


def _torch_cpu_sum_f32(x: np.ndarray) -> np.float32:
    """The float32 sum of a short contiguous vector, added in the order PyTorch's CPU kernel adds it.

    PyTorch sums 8-lane vectors (it keeps AVX2 width for sums on AVX-512 machines too) into 4
    interleaved accumulators, then the leftover vectors, then the accumulators; the sum starts from
    the elements past the last full vector and then adds the 8 lanes in order. Under 8 elements it
    does the same with 4 scalar accumulators. (Its cascade for long vectors starts at 512
    elements; longer vectors are summed exactly and rounded once.)
    """
    f32 = np.float32
    x = np.asarray(x, dtype=np.float32).ravel()
    n = x.size
    if n >= 512:
        return f32(math.fsum(x.tolist()))

    def row_sum(items: list) -> object:  # items: float32 scalars or 8-lane float32 arrays
        m = len(items) // 4
        partial = [items[k] for k in range(4)] if m else []
        for i in range(1, m):
            for k in range(4):
                partial[k] = (partial[k] + items[4 * i + k]).astype(np.float32) if isinstance(partial[k], np.ndarray) else f32(partial[k] + items[4 * i + k])
        zero = np.zeros_like(items[0]) if items and isinstance(items[0], np.ndarray) else f32(0)
        acc = partial[0] if m else zero
        for item in items[4 * m :]:
            acc = (acc + item).astype(np.float32) if isinstance(acc, np.ndarray) else f32(acc + item)
        for k in range(1, 4 if m else 1):
            acc = (acc + partial[k]).astype(np.float32) if isinstance(acc, np.ndarray) else f32(acc + partial[k])
        return acc

    if n < 8:
        return f32(row_sum([f32(v) for v in x]))
    vectors = n // 8
    lanes = row_sum([x[8 * i : 8 * i + 8] for i in range(vectors)])
    total = f32(0)
    for v in x[8 * vectors :]:
        total = f32(total + v)
    for v in lanes:
        total = f32(total + v)
    return total


def exit_counts(num_videos: int, exit_fractions: np.ndarray) -> np.ndarray:
    """``floor(N * p_t)`` per exit, the product taken in the fractions' precision (float32 for the official ones)."""
    p = np.asarray(exit_fractions)
    dtype = np.float32 if p.dtype == np.float32 else np.float64
    return np.floor(dtype(num_videos) * p.astype(dtype)).astype(np.int64)


def _check_values(values: np.ndarray, criterion: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 3:  # logits (videos, exits, classes)
        v = criterion_values(v, criterion)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise VideployError(
            f"exit criterion values must be (videos, exits) or logits (videos, exits, classes) with at least one of each, got shape {v.shape}"
        )
    if not np.isfinite(v).all():
        raise VideployError("exit criterion values must be finite numbers")
    return v


def fit_thresholds(values: np.ndarray, exit_fractions: Sequence[float] | np.ndarray, criterion: str = "entropy", last: int | None = None) -> np.ndarray:
    """The threshold fitter: eta_t exactly at the ``floor(N * p_t)``-th most confident remaining video.

    ``values`` (N, E): the criterion of every video at every exit from a run without early exits
    (or logits (N, E, classes)). ``exit_fractions``: p_0..p_{E-1}, normalised here in their own
    precision (pass :func:`official_exit_fractions` to reproduce the official counts). See the
    module docstring for the rule. An exit assigned no video never stops one; the last always does.
    ``last`` (default: the last exit) makes an earlier exit take everyone left, the exits after it
    unused (a budget search's truncated distributions); fractions after it are ignored.
    """
    return ThresholdFitter(values, criterion).fit(exit_fractions, last)


class ThresholdFitter:
    """:func:`fit_thresholds` for many exit distributions on the same videos (the ranking per exit is kept)."""

    def __init__(self, values: np.ndarray, criterion: str = "entropy"):
        self.criterion = check_criterion(criterion)
        self.values = _check_values(values, criterion)
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, t: int) -> np.ndarray:
        if t not in self._orders:
            self._orders[t] = most_confident_first(self.values[:, t], self.criterion)
        return self._orders[t]

    def fit(self, exit_fractions: Sequence[float] | np.ndarray, last: int | None = None) -> np.ndarray:
        v, criterion = self.values, self.criterion
        n, num_exits = v.shape
        last = num_exits - 1 if last is None else int(last)
        if not 0 <= last < num_exits:
            raise VideployError(f"last exit must be in [0, {num_exits}), got {last}")
        p = np.asarray(exit_fractions)
        p = p.astype(np.float32 if p.dtype == np.float32 else np.float64)
        if p.shape != (num_exits,) or not np.isfinite(p).all() or (p < 0).any() or p[: last + 1].sum() <= 0:
            raise VideployError(f"exit fractions must be {num_exits} non-negative numbers, not all 0, got {p.tolist()}")
        if last < num_exits - 1:
            p = p.copy()
            p[last + 1 :] = 0
        counts = exit_counts(n, _normalised(p))
        eta = np.full(num_exits, never_stops(criterion))
        taken = np.zeros(n, dtype=bool)
        for t in range(last):
            if counts[t] <= 0:
                continue
            order = self._order(t)
            remaining = order[~taken[order]]
            if remaining.size == 0:
                break
            chosen = remaining[: min(int(counts[t]), remaining.size)]
            eta[t] = v[chosen[-1], t]
            taken[chosen] = True
        eta[last:] = always_stops(criterion)
        return eta


def simulate_exits(values: np.ndarray, thresholds: Sequence[float], criterion: str = "entropy") -> np.ndarray:
    """The exit each video takes under ``thresholds``: the first t that stops it (the last always does)."""
    criterion = check_criterion(criterion)
    v = _check_values(values, criterion)
    eta = np.asarray(thresholds, dtype=np.float64)
    if eta.shape != (v.shape[1],) or np.isnan(eta).any():
        raise VideployError(f"need {v.shape[1]} thresholds (numbers, inf allowed), got {eta.tolist()}")
    stop = stops(v, eta[None, :], criterion)
    stop[:, -1] = True
    return stop.argmax(axis=1)


def expected_gflops(values: np.ndarray, thresholds: Sequence[float], exit_gflops: Sequence[float], criterion: str = "entropy") -> float:
    """Average GFLOPs per video under ``thresholds`` (``exit_gflops`` cumulative per exit)."""
    exits = simulate_exits(values, thresholds, criterion)
    cost = _check_costs(exit_gflops, np.asarray(values).shape[1])
    return float(cost[exits].mean())


def _check_costs(exit_gflops: Sequence[float], num_exits: int) -> np.ndarray:
    cost = np.asarray(exit_gflops, dtype=np.float64)
    if cost.shape != (num_exits,) or not np.isfinite(cost).all():
        raise VideployError(f"exit_gflops must list one finite cumulative cost per exit ({num_exits}), got {cost.tolist()}")
    return cost


@dataclass(frozen=True)
class ExitDistribution:
    """A candidate of a threshold search: exit fractions, the ratio q they come from, the exit taking everyone left."""

    fractions: np.ndarray
    q: float | None  # None: a one-hot distribution
    last: int

    def fit(self, fitter: "ThresholdFitter") -> np.ndarray:
        return fitter.fit(self.fractions, last=self.last)


def geometric(q: float, num_exits: int, last: int | None = None) -> ExitDistribution:
    """``p_t ∝ q^t``: the official float32 values for 0 < q <= 1, float64 beyond."""
    p = official_exit_fractions(q, num_exits) if 0 < q <= 1 else geometric_exit_distribution(q, num_exits)
    return ExitDistribution(p, float(q), num_exits - 1 if last is None else last)


def official_candidates(num_exits: int, qs: Sequence[float] | None = None) -> list[ExitDistribution]:
    """The official search: ``p_t ∝ q^t`` for q = 1/20 .. 19/20 (or ``qs``), the last exit taking everyone left."""
    return [geometric(float(q), num_exits) for q in (OFFICIAL_QS if qs is None else qs)]


# q's a budget search scans on top of the official ones (q > 1 favours late exits)
SEARCH_QS: tuple[float, ...] = tuple(float(q) for q in np.geomspace(1e-3, 1e3, 121))


def budget_candidates(num_exits: int) -> list[ExitDistribution]:
    """What a budget search tries: geometric distributions over exits 0..j (exit j taking everyone left)
    for every j and q, and one-hot distributions (every video at one exit: glance only ... full model).

    Truncating at exit j expresses "stop the confident ones early, run the rest to exit j", which a
    distribution spreading over every exit cannot, and one-hot ones cover a handful of videos.
    """
    out = [ExitDistribution(np.eye(num_exits)[t], None, num_exits - 1) for t in range(num_exits)]
    for last in range(1, num_exits):
        out += [geometric(q, num_exits, last) for q in sorted(set(OFFICIAL_QS + SEARCH_QS))]
    return out


def refine_to_budget(cost_of: Callable[[float], float], budget: float, scanned: Sequence[tuple[float, float]], steps: int = 30) -> float | None:
    """A q just inside the budget: bisection (in log q) between the scanned q's that straddle it.

    ``scanned``: (q, average GFLOPs) pairs already evaluated; ``cost_of(q)`` evaluates another q
    (more q, more late exits, more compute). The scanned grid is coarse at the scale of single
    videos; this finds a q whose cost stays within ``budget`` as close to it as bisection gets, so
    the solution spends (almost) all of it. None when no scanned pair straddles the budget.
    """
    grid = sorted((float(q), float(c)) for q, c in scanned if q is not None and q > 0)
    pairs = [(lo, hi) for (lo, c_lo), (hi, c_hi) in zip(grid, grid[1:]) if c_lo <= budget < c_hi]
    if not pairs:
        return None
    lo, hi = pairs[-1]
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        if cost_of(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def fit_exit_thresholds(
    values_or_logits: np.ndarray,
    exit_gflops: Sequence[float],
    budget: float,
    criterion: str = "entropy",
    qs: Sequence[float] | None = None,
) -> BudgetSolution:
    """Eq. 7 without labels: the thresholds spending the most GFLOPs on these videos within ``budget``.

    ``values_or_logits``: criterion values (videos, exits) or exit logits (videos, exits, classes).
    A budget at or above the last exit's cost disables early exit; one below the glance is an error.
    """
    criterion = check_criterion(criterion)
    v = _check_values(values_or_logits, criterion)
    num_exits = v.shape[1]
    cost = _check_costs(exit_gflops, num_exits)
    if not math.isfinite(budget) or budget < cost[0]:
        raise VideployError(
            f"a budget of {budget:g} GFLOPs per video is below the cheapest exit (the glance, {cost[0]:.4g} GFLOPs); "
            f"choose --budget between {cost[0]:.4g} and {cost[-1]:.4g}"
        )

    def solution(eta: np.ndarray, q: float | None) -> BudgetSolution:
        exits = simulate_exits(v, eta, criterion)
        frac = np.bincount(exits, minlength=num_exits) / v.shape[0]
        return BudgetSolution(tuple(float(x) for x in eta), q, float(cost[exits].mean()), tuple(float(f) for f in frac), float(budget), criterion)

    if budget >= cost[-1]:
        return solution(np.full(num_exits, never_stops(criterion)), None)  # enough for every step: no early exit
    best = solution(np.full(num_exits, always_stops(criterion)), None)  # glance only: always feasible
    candidates = official_candidates(num_exits, qs) if qs is not None else budget_candidates(num_exits)
    fitter = ThresholdFitter(v, criterion)
    solutions = [(c, solution(c.fit(fitter), c.q)) for c in candidates]
    for last in sorted({c.last for c in candidates if c.q is not None}):
        scanned = [(c.q, s.expected_gflops) for c, s in solutions if c.q is not None and c.last == last]
        q_edge = refine_to_budget(lambda q, last=last: solution(geometric(q, num_exits, last).fit(fitter), q).expected_gflops, budget, scanned)
        if q_edge is not None:
            solutions.append((geometric(q_edge, num_exits, last), solution(geometric(q_edge, num_exits, last).fit(fitter), q_edge)))
    for _, s in solutions:
        if s.expected_gflops <= budget + 1e-12 and s.expected_gflops > best.expected_gflops:
            best = s
    return best


def thresholds_for_budget(
    entropies: np.ndarray,
    exit_gflops: Sequence[float],
    budget: float,
    qs: Sequence[float] | None = None,
) -> BudgetSolution:
    """:func:`fit_exit_thresholds` on entropies (kept for existing callers)."""
    return fit_exit_thresholds(entropies, exit_gflops, budget, criterion="entropy", qs=qs)
