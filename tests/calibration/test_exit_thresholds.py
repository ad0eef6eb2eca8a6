"""Exit thresholds under a budget (Eq. 7) against an independent transliteration of the official search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videploy.calibration.exit_thresholds import (
    expected_gflops,
    fit_exit_thresholds,
    fit_thresholds,
    geometric_exit_distribution,
    simulate_exits,
    thresholds_for_budget,
)
from videploy.errors import VideployError

COST = np.array([1.0, 2.5, 4.0, 5.5, 7.0])  # glance, then + policy + t local steps


def official_exits(entropies: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Uni-AdaFocus dynamic_eval_find_threshold + dynamic_evaluate, in the official 'confidence' form
    (criterion = -entropy, higher is more confident, exit when criterion >= T[k])."""
    vals = -entropies.T  # (E, N)
    n_stage, n = vals.shape
    p = p / p.sum()
    filtered = np.zeros(n)
    T = np.full(n_stage, 1e8)
    for k in range(n_stage - 1):
        out_n = math.floor(n * p[k])
        if out_n > 0:
            order = np.argsort(-vals[k], kind="stable")
            rem = order[filtered[order] == 0]
            T[k] = vals[k][rem[out_n - 1]]
            filtered[rem[:out_n]] = 1
    T[-1] = -1e8
    exits = np.full(n, n_stage - 1)
    for i in range(n):
        for k in range(n_stage):
            if vals[k][i] >= T[k]:
                exits[i] = k
                break
    return exits


@pytest.fixture
def entropies() -> np.ndarray:
    rng = np.random.default_rng(0)
    # later exits are more confident on average, as in a trained model
    return rng.gamma(2.0, 0.5, size=(200, 5)) * np.linspace(1.5, 0.5, 5)


def test_geometric_distribution():
    p = geometric_exit_distribution(0.5, 4)
    np.testing.assert_allclose(p, np.array([8, 4, 2, 1]) / 15)
    np.testing.assert_allclose(geometric_exit_distribution(1.0, 3), [1 / 3] * 3)
    assert geometric_exit_distribution(1e3, 5).argmax() == 4  # q > 1 favours late exits
    with pytest.raises(VideployError):
        geometric_exit_distribution(0.0, 3)


@pytest.mark.parametrize("q", [0.05, 0.3, 0.6, 0.95, 1.0, 2.0])
def test_fit_matches_official_assignment(entropies, q):
    p = geometric_exit_distribution(q, 5)
    eta = fit_thresholds(entropies, p)
    exits = simulate_exits(entropies, eta)
    np.testing.assert_array_equal(exits, official_exits(entropies, p))
    counts = np.bincount(exits, minlength=5)
    for t in range(4):
        assert counts[t] == math.floor(200 * p[t]) or counts[t] == 0 and math.floor(200 * p[t]) == 0
    assert eta[-1] == math.inf


def test_budget_is_respected_and_used(entropies):
    previous = 0.0
    for budget in (1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 6.9):
        sol = thresholds_for_budget(entropies, COST, budget)
        assert sol.expected_gflops <= budget + 1e-12
        assert sol.expected_gflops == pytest.approx(expected_gflops(entropies, sol.thresholds, COST))
        assert sol.expected_gflops >= previous  # more budget, never less compute
        assert budget - sol.expected_gflops < 1.0  # and most of it is spent
        assert sum(sol.exit_fractions) == pytest.approx(1.0)
        previous = sol.expected_gflops
    full = thresholds_for_budget(entropies, COST, 7.0)
    assert full.thresholds == (-math.inf,) * 5 and full.expected_gflops == 7.0
    with pytest.raises(VideployError, match="below the cheapest exit"):
        thresholds_for_budget(entropies, COST, 0.5)


def test_tiny_sets_reach_every_exit():
    e = np.array([[1.0, 0.8, 0.6, 0.4, 0.2]] * 2)  # two identical videos
    sol = thresholds_for_budget(e, COST, 2.6)
    assert sol.expected_gflops == 2.5 and simulate_exits(e, sol.thresholds).tolist() == [1, 1]


def test_thresholds_sit_exactly_at_the_last_stopping_video():
    e = np.array([[0.1], [0.2], [0.3]]) @ np.ones((1, 3))
    eta = fit_thresholds(e, [1 / 3, 1 / 3, 1 / 3])
    assert eta[0] == 0.1 and eta[1] == 0.2 and eta[2] == math.inf  # as the official search: no margin
    assert simulate_exits(e, eta).tolist() == [0, 1, 2]
    # an exit given no video never stops one (the official 1e8 / -1e8 sentinels, as infinities)
    eta = fit_thresholds(e, [0.0, 0.5, 0.5])
    assert eta[0] == -math.inf and eta[1] == 0.1


def test_confidence_thresholds_rank_the_largest_logit_first():
    conf = np.array([[5.0, 1.0], [7.0, 2.0], [6.0, 9.0], [1.0, 3.0]])
    eta = fit_thresholds(conf, np.array([0.5, 0.5]), criterion="confidence")
    assert eta.tolist() == [6.0, -math.inf]  # the 2 most confident at exit 0: 7 and 6
    assert simulate_exits(conf, eta, criterion="confidence").tolist() == [1, 0, 0, 1]
    sol = fit_exit_thresholds(conf, [1.0, 2.0], 1.5, criterion="confidence")
    assert sol.expected_gflops == 1.5 and sol.criterion == "confidence"


def test_input_errors():
    with pytest.raises(VideployError, match="\\(videos, exits\\)"):
        fit_thresholds(np.zeros(3), [1.0])
    with pytest.raises(VideployError, match="finite"):
        fit_thresholds(np.array([[np.nan, 1.0]]), [0.5, 0.5])
    with pytest.raises(VideployError, match="need 2 thresholds"):
        simulate_exits(np.zeros((1, 2)), [0.0])
