"""End to end on real files: decode, model, and both together, timed side by side.

The runtime decodes on worker threads ahead of the model (:mod:`videploy.runtime.pipeline`), so a
stream's throughput should approach that of its slower stage, not the sum of both. This measures,
interleaved, on the same files:

* **decode**: what one decode worker does for each video (``Recognizer.prepare``), serially;
* **model**: ``predict_batch`` on the already decoded videos;
* **end to end**: ``predict_batch`` on the files, as ``videploy predict`` runs them (decode
  workers as the recognizer has them), and the same with decoding inline (no overlap).

``efficiency`` = end-to-end throughput / the slower stage's throughput (1.0: decoding fully
hidden behind the model, or the reverse).

AdaFocusV3 also runs with early exit and with every step, each with the focus frames prepared
only for the videos that reach them (``lazy``) and with every sampled frame prepared up front
(``eager``). ``realised`` = the share of the time its GFLOPs say early exit can save that it
really saved, end to end: ``(1 - t_exit / t_all) / (1 - GFLOPs_exit / GFLOPs_all)``. Thresholds
are fitted on the files themselves ("equal exits", a demonstration, not a calibration) unless
given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from videploy.bench.timing import Case, Clock, Timing, measure_interleaved
from videploy.jsonsafe import encode_float
from videploy.runtime.backends.base import Backend
from videploy.runtime.recognizer import Prediction, Recognizer


@dataclass(frozen=True)
class EndToEnd:
    """The cases timed on the same files, with the GFLOPs each ran (AdaFocusV3: per schedule)."""

    videos: int
    batch_size: int
    decode_workers: int
    timings: dict[str, Timing]
    gflops_per_video: dict[str, float]
    stages: dict[str, tuple[str, str]]  # end-to-end case -> (its decode case, its model case)

    def efficiency(self, case: str) -> float:
        """End-to-end throughput of ``case`` / the throughput of its slower stage."""
        dec, mod = self.stages[case]
        slower = min(self.timings[dec].throughput, self.timings[mod].throughput)
        return self.timings[case].throughput / slower if slower > 0 else math.nan

    def realised(self, lazy: bool = True) -> float | None:
        """AdaFocusV3: the share of the GFLOPs-predicted saving that early exit realised end to end."""
        kind = "lazy" if lazy else "eager"
        a, e = f"end to end, all steps, {kind}", f"end to end, early exit, {kind}"
        if a not in self.timings or e not in self.timings:
            return None
        saved_gflops = 1.0 - self.gflops_per_video[e] / self.gflops_per_video[a]
        saved_time = 1.0 - self.timings[e].stats.median / self.timings[a].stats.median
        return saved_time / saved_gflops if saved_gflops > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        cases = {}
        for name, t in self.timings.items():
            c = {**t.to_dict(), "videos_per_s": encode_float(t.throughput)}
            if name in self.gflops_per_video:
                c["gflops_per_video"] = self.gflops_per_video[name]
            if name in self.stages:
                c["stages"] = list(self.stages[name])
                c["efficiency"] = encode_float(self.efficiency(name))
            cases[name] = c
        d: dict[str, Any] = {"videos": self.videos, "batch_size": self.batch_size, "decode_workers": self.decode_workers, "cases": cases}
        for lazy in (True, False):
            r = self.realised(lazy)
            if r is not None:
                d[f"realised_{'lazy' if lazy else 'eager'}"] = encode_float(r)
        return d


def bench_end_to_end(
    backend: Backend,
    files: Sequence[str | Path],
    batch_size: int,
    repeat: int,
    warmup: int,
    clock: Clock,
    thresholds: Sequence[float] | None = None,
    decode_workers: int = 1,
) -> EndToEnd:
    """Time decoding, the model and the whole path on ``files`` (see the module docstring)."""
    paths = [str(f) for f in files]
    n = len(paths)
    rec = Recognizer(backend.bundle, backend=backend, decode_workers=decode_workers)
    cases: list[Case] = []
    gflops: dict[str, float] = {}
    stages: dict[str, tuple[str, str]] = {}
    decoded = [rec.prepare(p) for p in paths]

    def predict(r: Recognizer, videos: Sequence[Any], eta: Sequence[float] | None = None) -> Callable[[], list[Prediction]]:
        return lambda: r.predict_batch(videos, top_k=1, thresholds=None if eta is None else list(eta), batch_size=batch_size)

    def decode_all(lazy: bool) -> Callable[[], None]:
        def run() -> None:
            for p in paths:
                vi = rec.prepare(p, lazy=lazy)
                if vi.lazy is not None:
                    vi.lazy.close()

        return run

    if rec.adaptive is None:
        inline = Recognizer(backend.bundle, backend=backend, decode_workers=0)
        cases += [
            Case("decode", decode_all(False), items=n),
            Case("model", predict(rec, decoded), items=n),
            Case("end to end", predict(rec, paths), items=n),
            Case("end to end, decoding inline", predict(inline, paths), items=n),
        ]
        stages = {c: ("decode", "model") for c in ("end to end", "end to end, decoding inline")}
    else:
        from videploy.calibration.fit_on_videos import resolve_exit_thresholds

        ee = rec.manifest.early_exit
        everything = [-math.inf] * (ee.num_steps + 1)
        eta = resolve_exit_thresholds(rec, decoded, thresholds=thresholds, batch_size=batch_size, default="equal exits").values
        eager = Recognizer(backend.bundle, backend=backend, decode_workers=decode_workers, lazy_frames=False)
        cases += [
            Case("decode, every frame", decode_all(False), items=n),
            Case("decode, glance frames", decode_all(True), items=n),
            Case("model, all steps", predict(rec, decoded, everything), items=n),
            Case("model, early exit", predict(rec, decoded, eta), items=n),
        ]
        for label, schedule in (("all steps", everything), ("early exit", eta)):
            cases += [
                Case(f"end to end, {label}, lazy", predict(rec, paths, schedule), items=n),
                Case(f"end to end, {label}, eager", predict(eager, paths, schedule), items=n),
            ]
            model = f"model, {label}"
            gflops[model] = _gflops(predict(rec, decoded, schedule)())
            for kind in ("lazy", "eager"):
                gflops[f"end to end, {label}, {kind}"] = gflops[model]
                # the decode stage of the eager path is every frame; lazy also prepares focus frames later
                stages[f"end to end, {label}, {kind}"] = ("decode, every frame", model)
    try:
        timings = measure_interleaved(cases, repeat=repeat, warmup=warmup, clock=clock)
    finally:
        rec.close(backend=False)  # the backend belongs to the caller
    return EndToEnd(videos=n, batch_size=batch_size, decode_workers=decode_workers, timings=timings, gflops_per_video=gflops, stages=stages)


def _gflops(preds: list[Prediction]) -> float:
    return sum(p.gflops for p in preds) / len(preds)
