"""The exit criterion of AdaFocusV3: how confident one exit's logits are, and when a video stops.

The same two functions decide an exit at run time and fit the thresholds in calibration, so a
threshold means the same number in both places. numpy only (the runtime is torch-free).

Criteria (both as in the official Uni-AdaFocus evaluation, on each exit's raw logits):

* ``"entropy"`` (default, the paper's): the entropy of ``softmax(logits)`` in nats. A video stops
  at exit t when ``entropy <= eta_t``. (The official code ranks by the negated entropy
  ``sum(p * log p)`` and stops when it is ``>= T``; ``eta = -T`` is the same rule.)
* ``"confidence"`` (the official test's second criterion): the largest raw logit (not a
  probability). A video stops at exit t when ``max(logits) >= eta_t``.

Ties stop: a value exactly equal to the threshold exits, as in the official comparison.

Batch invariance (the rule): the value of a video is a function of its own logits only. It is
computed in float64 from the logits, row by row on a contiguous float64 copy, with the entropy
written as ``logsumexp(z) - sum(softmax(z) * z)`` for ``z = logits - max(logits)`` (no
``log(0)``: probabilities that underflow contribute exactly 0). A video's exit therefore does not
depend on which other videos share its batch, nor on the batch size; a threshold placed exactly at a
video's value stops that video wherever it runs. (The logits themselves come from the graphs; the
backend must keep rows independent, which every graph contract requires.)
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from videploy.bundle.manifest import EXIT_CRITERIA
from videploy.errors import VideployError

Criterion = Literal["entropy", "confidence"]
CRITERIA: tuple[str, ...] = EXIT_CRITERIA


def check_criterion(criterion: str) -> Criterion:
    """``criterion`` if it is a known exit criterion, else a :class:`VideployError` listing them."""
    if criterion not in CRITERIA:
        raise VideployError(f"unknown exit criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    return criterion  # type: ignore[return-value]


def criterion_values(logits: np.ndarray, criterion: str = "entropy") -> np.ndarray:
    """The criterion of every row of ``logits`` (..., classes), as float64 of shape ``logits.shape[:-1]``."""
    check_criterion(criterion)
    x = np.asarray(logits)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise VideployError(f"exit logits must end with a class axis of at least one class, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise VideployError(f"exit logits must be numbers, got dtype {x.dtype}")
    rows = np.array(x, dtype=np.float64, order="C", copy=True).reshape(-1, x.shape[-1])
    if not np.isfinite(rows).all():
        raise VideployError("exit logits must be finite; a NaN or inf logit means the graph or its input is broken")
    if criterion == "confidence":
        return rows.max(axis=1).reshape(x.shape[:-1])
    rows -= rows.max(axis=1, keepdims=True)  # z <= 0, max(z) == 0: exp cannot overflow
    e = np.exp(rows)
    total = e.sum(axis=1, keepdims=True)  # >= 1
    entropy = np.log(total[:, 0]) - (e * rows).sum(axis=1) / total[:, 0]
    return np.maximum(entropy, 0.0).reshape(x.shape[:-1])  # rounding may give -1e-17 for a one-hot row


def stops(values: np.ndarray | float, threshold: np.ndarray | float, criterion: str = "entropy") -> np.ndarray:
    """Whether a video with criterion ``values`` stops at an exit with threshold(s) ``threshold``.

    Entropy: ``value <= threshold``; confidence: ``value >= threshold``. Broadcasts; ``+inf`` /
    ``-inf`` thresholds mean "always" / "never" for entropy and the reverse for confidence.
    """
    check_criterion(criterion)
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(threshold, dtype=np.float64)
    return v <= t if criterion == "entropy" else v >= t


def never_stops(criterion: str = "entropy") -> float:
    """The threshold with which no video stops (the full model runs)."""
    return -np.inf if check_criterion(criterion) == "entropy" else np.inf


def always_stops(criterion: str = "entropy") -> float:
    """The threshold with which every video stops."""
    return np.inf if check_criterion(criterion) == "entropy" else -np.inf


def most_confident_first(values: np.ndarray, criterion: str = "entropy") -> np.ndarray:
    """Indices of the 1-D ``values`` from most to least confident; ties keep their input order."""
    check_criterion(criterion)
    v = np.asarray(values, dtype=np.float64)
    # negation is exact, so a stable ascending sort of -v is a stable descending sort of v
    return np.argsort(v if criterion == "entropy" else -v, kind="stable")
