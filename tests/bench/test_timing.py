"""The timing core on a fake clock: exact samples, interleaving order, statistics, ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videploy.bench.timing import (
    Case,
    Stats,
    Timing,
    measure_interleaved,
    percentile,
    speedup,
)
from videploy.errors import VideployError


class FakeClock:
    """Time advances only when a case 'works': ``work(seconds)`` moves it, scaled by an optional drift."""

    def __init__(self, drift_per_call: float = 0.0):
        self.now = 100.0
        self.calls = 0
        self.drift = drift_per_call
        self.log: list[str] = []

    def __call__(self) -> float:
        return self.now

    def work(self, name: str, seconds: float):
        def fn():
            # the machine gets slower with every call (a busier neighbour): the drift interleaving must cancel
            self.now += seconds * (1.0 + self.drift * self.calls)
            self.calls += 1
            self.log.append(name)

        return fn


@pytest.mark.parametrize("n", [1, 2, 5, 10, 11, 37])
def test_statistics_match_numpy(n):
    xs = np.random.default_rng(n).exponential(size=n) + 0.001
    s = Stats.of(xs.tolist())
    for q, got in ((50, s.median), (90, s.p90), (25, s.q1), (75, s.q3)):
        assert got == pytest.approx(np.percentile(xs, q), rel=1e-12)
    assert s.iqr == pytest.approx(np.percentile(xs, 75) - np.percentile(xs, 25), rel=1e-12)
    assert s.mean == pytest.approx(xs.mean()) and s.minimum == xs.min() and s.maximum == xs.max()
    assert percentile(xs.tolist(), 0) == xs.min() and percentile(xs.tolist(), 100) == xs.max()


def test_samples_are_exact_and_interleaved():
    clock = FakeClock()
    before_calls = []

    def before():
        clock.now += 50.0  # untimed setup must not leak into a sample
        before_calls.append(1)

    cases = [
        Case("a", clock.work("a", 0.010), items=1),
        Case("b", clock.work("b", 0.030), items=4, before=before),
        Case("c", clock.work("c", 0.020), items=2),
    ]
    out = measure_interleaved(cases, repeat=4, warmup=2, clock=clock)
    assert list(out) == ["a", "b", "c"]
    # warm-up rounds then timed rounds, each round A B C: never A A A ...
    assert clock.log == ["a", "b", "c"] * 6
    assert len(before_calls) == 6
    for name, secs in (("a", 0.010), ("b", 0.030), ("c", 0.020)):
        t = out[name]
        assert isinstance(t, Timing) and len(t.stats.samples) == 4
        np.testing.assert_allclose(t.stats.samples, [secs] * 4, rtol=1e-9)
        assert t.stats.iqr == pytest.approx(0.0, abs=1e-12)
    assert out["b"].throughput == pytest.approx(4 / 0.030)
    assert speedup(out["b"], out["a"]) == pytest.approx(3.0)
    assert speedup(out["a"].stats, out["c"].stats) == pytest.approx(0.5)


def test_interleaving_cancels_drift():
    """B costs twice A. Under a steady slowdown, interleaved timing still sees ~2x; back-to-back does not."""
    clock = FakeClock(drift_per_call=0.05)
    inter = measure_interleaved([Case("a", clock.work("a", 1.0)), Case("b", clock.work("b", 2.0))], repeat=11, warmup=0, clock=clock)
    ratio_interleaved = speedup(inter["a"], inter["b"])  # = median(a) / median(b)

    clock = FakeClock(drift_per_call=0.05)
    a = measure_interleaved([Case("a", clock.work("a", 1.0))], repeat=11, warmup=0, clock=clock)["a"]
    b = measure_interleaved([Case("b", clock.work("b", 2.0))], repeat=11, warmup=0, clock=clock)["b"]
    ratio_sequential = speedup(a, b)

    assert abs(1 / ratio_interleaved - 2.0) / 2.0 < 0.05
    assert abs(1 / ratio_sequential - 2.0) / 2.0 > 0.2


def test_median_ignores_a_preemption_p90_shows_it():
    clock = FakeClock()
    durations = iter([0.01] * 9 + [1.0])  # one call hit by a neighbour's job

    def fn():
        clock.now += next(durations)

    t = measure_interleaved([Case("x", fn)], repeat=10, warmup=0, clock=clock)["x"]
    assert t.stats.median == pytest.approx(0.01)
    assert t.stats.p90 == pytest.approx(0.01 + 0.1 * (1.0 - 0.01))
    assert t.stats.mean == pytest.approx((9 * 0.01 + 1.0) / 10)


def test_to_dict_is_consistent():
    clock = FakeClock()
    t = measure_interleaved([Case("x", clock.work("x", 0.25), items=5)], repeat=3, warmup=1, clock=clock)["x"]
    d = t.to_dict()
    assert d["repeat"] == 3 and d["samples_s"] == list(t.stats.samples)
    assert d["median_s"] == pytest.approx(0.25) and d["throughput_per_s"] == pytest.approx(20.0)
    assert d["iqr_s"] == pytest.approx(d["q3_s"] - d["q1_s"])


def test_bad_arguments():
    with pytest.raises(VideployError, match="repeat"):
        measure_interleaved([Case("x", lambda: None)], repeat=0)
    with pytest.raises(VideployError, match="warmup"):
        measure_interleaved([Case("x", lambda: None)], repeat=1, warmup=-1)
    with pytest.raises(VideployError, match="unique"):
        measure_interleaved([Case("x", lambda: None), Case("x", lambda: None)], repeat=1)
    with pytest.raises(VideployError):
        Stats.of([])
    zero = Stats.of([0.0])
    assert speedup(Stats.of([1.0]), zero) == math.inf
