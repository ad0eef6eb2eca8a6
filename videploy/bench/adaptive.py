"""AdaFocusV3 benchmarks on a stream of videos: early exit vs all steps, static vs continuous batching.

Compute comes from the runtime's own accounting, not from timing: each video's GFLOPs is the
manifest's ``exit_gflops[exit]`` for the exit it took (what :class:`~videploy.runtime.Prediction`
reports), and the backend's counters give the local-encoder calls and rows that really ran. Each
case first runs once untimed to collect that accounting (which also warms it up), then all cases
are timed interleaved (:func:`~videploy.bench.timing.measure_interleaved`).

* **early exit**: the stream with the exit thresholds vs with ``-inf`` everywhere (every video
  runs every focus step), both in static batches. GFLOPs ratio and time ratio side by side: the
  time ratio is what the saved compute buys on this backend (small graphs are dominated by call
  overhead, so it can be far from the GFLOPs ratio).
* **batching**: the stream with the thresholds in static batches (a batch shrinks as its videos
  exit) vs continuous batching (exited videos are replaced by new ones, so local-encoder calls
  stay full). Occupancy = local-encoder rows per call; results must be identical.

Thresholds: :func:`videploy.calibration.fit_on_videos.resolve_exit_thresholds` (the same use case
``videploy predict`` runs), with the "equal exits" default: a spread of exits is what static vs
continuous batching needs to differ, and a budget alone may put every video at one exit on a few
random-weight clips.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from videploy.bench.timing import (
    Case,
    Clock,
    Timing,
    measure_interleaved,
    speedup,
)
from videploy.jsonsafe import encode_float
from videploy.runtime.recognizer import Prediction, Recognizer
from videploy.runtime.video import VideoInput


@dataclass(frozen=True)
class Accounting:
    """What one run of the stream did, from the runtime's accounting."""

    gflops_per_video: float
    exit_counts: tuple[int, ...]  # videos leaving at exit 0..Tf
    calls: dict[str, int]
    rows: dict[str, int]
    batch_size: int
    stages_s: dict[str, float] = field(default_factory=dict)  # wall time per stage of that run (glue included)

    @property
    def local_rows_per_call(self) -> float:
        c = self.calls.get("local", 0)
        return self.rows.get("local", 0) / c if c else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "gflops_per_video": self.gflops_per_video,
            "exit_counts": list(self.exit_counts),
            "calls": dict(self.calls),
            "rows": dict(self.rows),
            "local_rows_per_call": self.local_rows_per_call,
            "local_occupancy": self.local_rows_per_call / self.batch_size if self.batch_size else 0.0,
            "stages_s": dict(self.stages_s),
        }


def account(rec: Recognizer, run: Callable[[], list[Prediction]], batch_size: int) -> tuple[Accounting, list[Prediction]]:
    """Run once (untimed by the benchmark) with fresh counters; the work done, where the time went, and the predictions."""
    ee = rec.manifest.early_exit
    rec.counters.reset()
    with stage_timer(rec.backend) as stages:
        t0 = time.perf_counter()
        preds = run()
        total = time.perf_counter() - t0
    stages["glue (host: gathers, decisions, bookkeeping)"] = max(0.0, total - sum(stages.values()))
    c = rec.counters.snapshot()
    exits = np.bincount([p.adaptive.exit_step for p in preds], minlength=ee.num_steps + 1)
    acc = Accounting(
        gflops_per_video=float(np.mean([p.gflops for p in preds])),
        exit_counts=tuple(int(x) for x in exits),
        calls=dict(c.calls),
        rows=dict(c.rows),
        batch_size=batch_size,
        stages_s=dict(stages),
    )
    return acc, preds


@contextlib.contextmanager
def stage_timer(backend: Any) -> Iterator[dict[str, float]]:
    """Wall time of every backend call inside the block, by stage: ``glance``, ``policy``, ``local step t``
    (the step of the rows, or ``local mixed steps`` in continuous batching)."""
    stages: dict[str, float] = {}
    original = backend.run

    def timed(role: str, inputs: Any, fetch: Any = None) -> Any:
        key = role
        if role == "local":
            step = np.asarray(inputs["step"])
            key = f"local step {int(step[0]) + 1}" if step.size and (step == step[0]).all() else "local mixed steps"
        t0 = time.perf_counter()
        try:
            return original(role, inputs, fetch=fetch)
        finally:
            stages[key] = stages.get(key, 0.0) + time.perf_counter() - t0

    backend.run = timed
    try:
        yield stages
    finally:
        del backend.run  # the instance attribute goes; the class's method is back


def sweep_budgets(
    rec: Recognizer, stream: Sequence[VideoInput], fractions: Sequence[float], batch_size: int, repeat: int, warmup: int, clock: Clock
) -> list[dict[str, Any]]:
    """GFLOPs and time per video at exit budgets placed at ``fractions`` of the way from the glance to
    all steps (thresholds fitted on the stream itself): the curve behind AdaFocusV3's speed claim."""
    from videploy.calibration.fit_on_videos import resolve_exit_thresholds

    ee = rec.manifest.early_exit
    lo, hi = ee.exit_gflops[0], ee.exit_gflops[-1]
    runs, budgets = {}, {}
    for f in fractions:
        budget = lo + float(f) * (hi - lo)
        eta = resolve_exit_thresholds(rec, stream, budget=budget, batch_size=batch_size).values
        name = f"budget {budget:.4g}"
        runs[name] = lambda eta=eta: rec.predict_batch(stream, thresholds=list(eta), batch_size=batch_size)
        budgets[name] = budget
    accounting = {name: account(rec, run, batch_size)[0] for name, run in runs.items()}
    timings = measure_interleaved([Case(name, run, items=len(stream)) for name, run in runs.items()], repeat=repeat, warmup=warmup, clock=clock)
    return [
        {
            "budget_gflops": budgets[name],
            "gflops_per_video": accounting[name].gflops_per_video,
            "time_per_video_s": timings[name].stats.median / len(stream),
            "exit_counts": list(accounting[name].exit_counts),
        }
        for name in runs
    ]


@dataclass(frozen=True)
class Comparison:
    """Two schedules of the same stream, timed side by side, with their accounting."""

    names: tuple[str, str]  # (baseline, candidate)
    timings: dict[str, Timing]
    accounting: dict[str, Accounting]
    identical_results: bool | None = None

    @property
    def speedup(self) -> float:
        """candidate throughput / baseline throughput (median times)."""
        a, b = self.names
        return speedup(self.timings[a], self.timings[b])

    @property
    def gflops_ratio(self) -> float:
        a, b = self.names
        base = self.accounting[a].gflops_per_video
        return self.accounting[b].gflops_per_video / base if base > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        a, b = self.names
        d: dict[str, Any] = {
            "baseline": a,
            "candidate": b,
            "cases": {n: {**self.timings[n].to_dict(), **self.accounting[n].to_dict()} for n in self.names},
            "speedup": encode_float(self.speedup),
            "time_ratio": encode_float(speedup(self.timings[b], self.timings[a])),
            "gflops_ratio": encode_float(self.gflops_ratio),
        }
        if self.identical_results is not None:
            d["identical_results"] = self.identical_results
        return d


def bench_early_exit(
    rec: Recognizer, stream: Sequence[VideoInput], eta: Sequence[float], batch_size: int, repeat: int, warmup: int, clock: Clock
) -> Comparison:
    """All steps (``-inf``) vs early exit with ``eta``, static batches of ``batch_size``."""
    n = rec.manifest.early_exit.num_steps + 1
    runs = {
        "all steps": lambda: rec.predict_batch(stream, thresholds=[-math.inf] * n, batch_size=batch_size),
        "early exit": lambda: rec.predict_batch(stream, thresholds=list(eta), batch_size=batch_size),
    }
    return _compare(rec, runs, batch_size, repeat, warmup, clock)


def bench_batching(
    rec: Recognizer, stream: Sequence[VideoInput], eta: Sequence[float], batch_size: int, repeat: int, warmup: int, clock: Clock
) -> Comparison:
    """Static vs continuous batching of the stream with ``eta``; results must be identical."""
    runs = {
        "static": lambda: rec.predict_batch(stream, thresholds=list(eta), batch_size=batch_size, continuous=False),
        "continuous": lambda: rec.predict_batch(stream, thresholds=list(eta), batch_size=batch_size, continuous=True),
    }
    return _compare(rec, runs, batch_size, repeat, warmup, clock, check_identical=True)


def _compare(
    rec: Recognizer,
    runs: dict[str, Callable[[], list[Prediction]]],
    batch_size: int,
    repeat: int,
    warmup: int,
    clock: Clock,
    check_identical: bool = False,
) -> Comparison:
    accounting: dict[str, Accounting] = {}
    preds: dict[str, list[Prediction]] = {}
    for name, run in runs.items():
        accounting[name], preds[name] = account(rec, run, batch_size)
    count = len(next(iter(preds.values())))
    timings = measure_interleaved([Case(name, run, items=count) for name, run in runs.items()], repeat=repeat, warmup=warmup, clock=clock)
    identical = None
    if check_identical:
        a, b = (preds[n] for n in runs)
        identical = all(
            p.adaptive.exit_step == q.adaptive.exit_step and np.allclose(p.probabilities, q.probabilities, rtol=1e-5, atol=1e-7) for p, q in zip(a, b)
        )
    names = tuple(runs)
    return Comparison(names=(names[0], names[1]), timings=timings, accounting=accounting, identical_results=identical)
