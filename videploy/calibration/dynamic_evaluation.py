"""Labelled exit thresholds: the official dynamic evaluation, a budget choice, and the random-exit baseline.

:func:`dynamic_evaluation` repeats the official early-exit evaluation of Uni-AdaFocus (after
MSDNet): for each ratio ``q`` (default 1/20 .. 19/20) it fits thresholds on one set of videos with
:func:`~videploy.calibration.exit_thresholds.fit_thresholds` (the rule is stated in that module) and
evaluates them on a held-out set: how many videos leave at each exit, top-1 accuracy, average GFLOPs.

:func:`choose_for_budget` picks, among the evaluated thresholds whose held-out average GFLOPs fits a
budget, the most accurate (ties: the one spending more). The random-exit baseline of the paper's
comparison sends the same number of held-out videos to each exit but picks them at random; its
accuracy here is the expectation over that draw, ``sum_t n_t / N * accuracy_t`` (the official code
draws once), so it needs no seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from videploy.jsonsafe import encode_float

from videploy.calibration.exit_thresholds import (
    ExitDistribution,
    ThresholdFitter,
    budget_candidates,
    geometric,
    official_candidates,
    refine_to_budget,
    simulate_exits,
)
from videploy.errors import VideployError
from videploy.runtime.exit_criteria import check_criterion, criterion_values


@dataclass(frozen=True)
class DynamicPoint:
    """One ``q`` of the dynamic evaluation, measured on the held-out videos."""

    q: float | None  # None: a one-hot exit distribution (every fitting video at one exit)
    last_exit: int  # the exit taking every video left (the last one in the official evaluation)
    thresholds: tuple[float, ...]  # eta_0 .. eta_{E-1}, fitted on the fitting videos
    exit_counts: tuple[int, ...]  # held-out videos leaving at each exit
    accuracy: float  # top-1 on the held-out videos, in [0, 1]
    gflops: float  # average GFLOPs per held-out video
    random_accuracy: float  # expected accuracy of random exits in the same numbers

    def to_dict(self) -> dict:
        return {
            "q": self.q,
            "last_exit": self.last_exit,
            "thresholds": [encode_float(x) for x in self.thresholds],
            "exit_counts": list(self.exit_counts),
            "accuracy": self.accuracy,
            "gflops": self.gflops,
            "random_accuracy": self.random_accuracy,
        }




def _check_logits(name: str, logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits)
    if x.ndim != 3 or 0 in x.shape:
        raise VideployError(f"{name} must be exit logits shaped (videos, exits, classes), got shape {x.shape}")
    return x


def dynamic_evaluation(
    train_logits: np.ndarray,
    val_logits: np.ndarray,
    val_labels: Sequence[int] | np.ndarray,
    exit_gflops: Sequence[float],
    criterion: str = "entropy",
    qs: Sequence[float] | None = None,
) -> list[DynamicPoint]:
    """The official dynamic evaluation: thresholds fitted on ``train_logits``, measured on ``val_logits``.

    Logits are (videos, exits, classes) (exit 0 the glance, the last after every focus step);
    ``val_labels`` the class index of each held-out video; ``exit_gflops`` the cumulative cost per
    exit. ``qs`` default to the official 1/20 .. 19/20 (a q > 1 uses a float64 distribution).
    Returns one :class:`DynamicPoint` per ``q``, in order.
    """
    criterion = check_criterion(criterion)
    tr = _check_logits("train_logits", train_logits)
    va = _check_logits("val_logits", val_logits)
    if tr.shape[1:] != va.shape[1:]:
        raise VideployError(f"train and held-out logits must have the same exits and classes, got {tr.shape[1:]} and {va.shape[1:]}")
    return evaluate_candidates(
        criterion_values(tr, criterion), criterion_values(va, criterion), va, val_labels, exit_gflops, criterion, official_candidates(tr.shape[1], qs)
    )


def evaluate_candidates(
    train_values: np.ndarray,
    val_values: np.ndarray,
    val_logits: np.ndarray,
    val_labels: Sequence[int] | np.ndarray,
    exit_gflops: Sequence[float],
    criterion: str,
    candidates: Sequence[ExitDistribution],
) -> list[DynamicPoint]:
    """Fit each candidate exit distribution on the train values, measure it on the held-out videos."""
    return HeldOut(train_values, val_values, val_logits, val_labels, exit_gflops, criterion).points(candidates)


class HeldOut:
    """Fits candidates on the train values and measures them on the held-out videos (checks done once)."""

    def __init__(self, train_values: np.ndarray, val_values: np.ndarray, val_logits: np.ndarray, val_labels: Sequence[int] | np.ndarray, exit_gflops: Sequence[float], criterion: str):
        n_val, num_exits, num_classes = val_logits.shape
        labels = np.asarray(val_labels)
        if labels.shape != (n_val,) or not np.issubdtype(labels.dtype, np.integer):
            raise VideployError(f"val_labels must be {n_val} class indices (one per held-out video), got shape {labels.shape} of {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise VideployError(f"val_labels must be class indices in [0, {num_classes}), got {labels.min()}..{labels.max()}")
        self.cost = np.asarray(exit_gflops, dtype=np.float64)
        if self.cost.shape != (num_exits,) or not np.isfinite(self.cost).all():
            raise VideployError(f"exit_gflops must list one cumulative cost per exit ({num_exits}), got {self.cost.tolist()}")
        self.criterion = criterion
        self.val_values = val_values
        self.correct = np.asarray(val_logits).argmax(axis=2) == labels[:, None]  # (videos, exits)
        self.exit_accuracy = self.correct.mean(axis=0)
        self.fitter = ThresholdFitter(train_values, criterion)

    def points(self, candidates: Sequence[ExitDistribution]) -> list[DynamicPoint]:
        n_val, num_exits = self.correct.shape
        rows = np.arange(n_val)
        out = []
        for c in candidates:
            eta = c.fit(self.fitter)
            exits = simulate_exits(self.val_values, eta, self.criterion)
            counts = np.bincount(exits, minlength=num_exits)
            out.append(
                DynamicPoint(
                    q=c.q,
                    last_exit=c.last,
                    thresholds=tuple(float(x) for x in eta),
                    exit_counts=tuple(int(k) for k in counts),
                    accuracy=float(self.correct[rows, exits].mean()),
                    gflops=float(self.cost[exits].mean()),
                    random_accuracy=float(counts @ self.exit_accuracy / n_val),
                )
            )
        return out


def fixed_exit_points(val_logits: np.ndarray, val_labels: Sequence[int] | np.ndarray, exit_gflops: Sequence[float]) -> list[tuple[float, float]]:
    """(GFLOPs, accuracy) of every video stopping at exit t, for each t (glance only ... all steps)."""
    va = _check_logits("val_logits", val_logits)
    acc = (va.argmax(axis=2) == np.asarray(val_labels)[:, None]).mean(axis=0)
    return [(float(g), float(a)) for g, a in zip(exit_gflops, acc)]


def choose_for_budget(points: Sequence[DynamicPoint], budget: float) -> DynamicPoint:
    """The most accurate point whose held-out average GFLOPs is within ``budget`` (ties: more GFLOPs)."""
    feasible = [p for p in points if p.gflops <= budget + 1e-9]
    if not feasible:
        cheapest = min(p.gflops for p in points)
        raise VideployError(
            f"no thresholds reach an average of {budget:g} GFLOPs per video on the held-out videos (the cheapest found "
            f"costs {cheapest:.4g}); raise --budget to at least {cheapest:.4g}"
        )
    return max(feasible, key=lambda p: (p.accuracy, p.gflops))


def budget_search(
    train_logits: np.ndarray,
    val_logits: np.ndarray,
    val_labels: Sequence[int] | np.ndarray,
    exit_gflops: Sequence[float],
    budget: float,
    criterion: str = "entropy",
) -> tuple[DynamicPoint, list[DynamicPoint]]:
    """Thresholds for a GFLOPs budget, chosen by held-out accuracy among a wide set of exit distributions.

    The search tries :func:`~videploy.calibration.exit_thresholds.budget_candidates` (the official q's
    and a dense q grid, also q > 1, over exits 0..j for every j, and one-hot distributions), so any
    budget between the glance and the full model is reachable, and refines q where the held-out cost
    crosses the budget, so the choice can spend all of it. Returns the choice and
    every evaluated point.
    """
    criterion = check_criterion(criterion)
    tr = _check_logits("train_logits", train_logits)
    va = _check_logits("val_logits", val_logits)
    num_exits = tr.shape[1]
    train_values, val_values = criterion_values(tr, criterion), criterion_values(va, criterion)

    evaluate = HeldOut(train_values, val_values, va, val_labels, exit_gflops, criterion).points
    points = evaluate(budget_candidates(num_exits))
    # the q grid is coarse at the scale of one video: per family, also the q where the held-out cost meets the budget
    for last in range(1, num_exits):
        family = [(p.q, p.gflops) for p in points if p.q is not None and p.last_exit == last]
        q_edge = refine_to_budget(lambda q, last=last: evaluate([geometric(q, num_exits, last)])[0].gflops, budget, family)
        if q_edge is not None:
            points += evaluate([geometric(q_edge, num_exits, last)])
    return choose_for_budget(points, budget), points
