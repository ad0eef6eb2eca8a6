"""The timing core: warm-up, interleaved repetitions, robust statistics, ratios. Standard library only.

Why interleaved. On a shared, noisy machine the speed available to a process drifts (other jobs,
frequency scaling, caches). Timing backend A ten times and then backend B ten times puts any drift
into the A/B ratio. :func:`measure_interleaved` instead runs one repetition of every case per
round (A B A B ...), so slow and fast periods hit all cases alike and cancel in their ratio.

Why median / p90 / IQR. Wall-time samples have a long right tail (a preemption makes one call ten
times slower, never ten times faster); the median ignores it, p90 shows it, the IQR says how
spread the typical samples are. The mean is kept for reference only.

Percentiles interpolate linearly between order statistics (numpy's default, ``method="linear"``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from videploy.errors import VideployError
from videploy.jsonsafe import encode_float

Clock = Callable[[], float]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples`` (numpy's linear interpolation between order statistics)."""
    if not len(samples):
        raise VideployError("a percentile of no samples is undefined; time at least one repetition")
    if not 0.0 <= q <= 100.0:
        raise VideployError(f"percentile q must be in [0, 100], got {q}")
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


@dataclass(frozen=True)
class Stats:
    """Summary of wall-time samples, in seconds (numpy statistics)."""

    samples: tuple[float, ...]
    median: float
    p90: float
    q1: float
    q3: float
    mean: float
    minimum: float
    maximum: float
    p95: float = math.nan
    p99: float = math.nan

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @classmethod
    def of(cls, samples: Sequence[float]) -> "Stats":
        xs = np.asarray([float(x) for x in samples], dtype=np.float64)
        if xs.size == 0:
            raise VideployError("no timing samples to summarise; use at least one repetition")
        q1, med, q3, p90, p95, p99 = np.percentile(xs, [25, 50, 75, 90, 95, 99])
        return cls(
            samples=tuple(float(x) for x in xs),
            median=float(med),
            p90=float(p90),
            q1=float(q1),
            q3=float(q3),
            mean=float(xs.mean()),
            minimum=float(xs.min()),
            maximum=float(xs.max()),
            p95=float(p95),
            p99=float(p99),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "repeat": len(self.samples),
            "mean_s": self.mean,
            "median_s": self.median,
            "p90_s": self.p90,
            "p95_s": self.p95,
            "p99_s": self.p99,
            "min_s": self.minimum,
            "max_s": self.maximum,
            "q1_s": self.q1,
            "q3_s": self.q3,
            "iqr_s": self.iqr,
            "samples_s": list(self.samples),
        }


@dataclass(frozen=True)
class Case:
    """One thing to time. ``fn`` is one repetition; ``items`` the work it does (videos, rows) for
    throughput; ``before`` runs untimed before every call (e.g. resetting counters)."""

    name: str
    fn: Callable[[], Any]
    items: int = 1
    before: Callable[[], Any] | None = None


@dataclass(frozen=True)
class Timing:
    """The measured samples of one case."""

    name: str
    stats: Stats
    items: int

    @property
    def throughput(self) -> float:
        """Items per second at the median time."""
        return self.items / self.stats.median if self.stats.median > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "throughput_per_s": encode_float(self.throughput), **self.stats.to_dict()}


def measure_interleaved(
    cases: Sequence[Case],
    repeat: int,
    warmup: int = 1,
    clock: Clock = time.perf_counter,
) -> dict[str, Timing]:
    """Time every case ``repeat`` times, interleaved: round r runs case 1, case 2, ... once each.

    Warm-up calls (``warmup`` per case, also interleaved) are run and discarded: they pay for lazy
    initialisation, memory allocation and cold caches that a steady-state number should not include.
    Returns name -> :class:`Timing`, in the order of ``cases``.
    """
    if repeat < 1:
        raise VideployError(f"--repeat must be >= 1, got {repeat}")
    if warmup < 0:
        raise VideployError(f"--warmup must be >= 0, got {warmup}")
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise VideployError(f"benchmark case names must be unique, got {names}")
    for _ in range(warmup):
        for c in cases:
            if c.before is not None:
                c.before()
            c.fn()
    samples: dict[str, list[float]] = {c.name: [] for c in cases}
    for _ in range(repeat):
        for c in cases:
            if c.before is not None:
                c.before()
            t0 = clock()
            c.fn()
            samples[c.name].append(clock() - t0)
    return {c.name: Timing(c.name, Stats.of(samples[c.name]), c.items) for c in cases}


def speedup(reference: Timing | Stats, other: Timing | Stats) -> float:
    """How many times faster ``other`` is than ``reference``: median(reference) / median(other)."""
    r = reference.stats if isinstance(reference, Timing) else reference
    o = other.stats if isinstance(other, Timing) else other
    if o.median <= 0:
        return math.inf
    return r.median / o.median
