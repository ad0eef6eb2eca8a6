"""Predicting a list of video files with a bundle: the use case behind ``videploy predict`` and the demo.

    run = predict_files("bundle/", ["a.mp4", "b.mp4"], PredictOptions(top_k=3, budget=8.5))
    for r in run.results: ...
    json_text = jsonsafe.dumps(run.to_dict())

Videos that cannot be decoded are collected in ``run.failures`` (one message each) while the others
are predicted; everything else wrong (the bundle, the options) raises :class:`VideployError`
before any video is decoded. Torch is imported only for ``backend="torch"``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from videploy.bundle.bundle import BundleLike
from videploy.calibration.fit_on_videos import ExitThresholds, resolve_exit_thresholds, thresholds_from_values
from videploy.errors import VideployError
from videploy.runtime.adaptive import AdaptiveOutcome, exit_step
from videploy.runtime.exit_criteria import never_stops
from videploy.runtime.recognizer import Prediction, Recognizer, Timing
from videploy.runtime.video import VideoInput, check_view_counts


@dataclass(frozen=True)
class PredictOptions:
    """How to predict. ``None`` means the default (the backend's device, the bundle's batch, ...)."""

    backend: str | None = None  # None: the bundle's measured CPU default (videploy bench --set-default), else onnxruntime
    device: str | None = None
    precision: str | None = None
    labels: str | Path | None = None
    top_k: int = 5
    views: str | None = None  # "CLIPSxCROPS" or "official"
    thresholds: Sequence[float] | None = None  # AdaFocusV3: eta_0..eta_T
    budget: float | None = None  # AdaFocusV3: fit thresholds on the inputs for this average GFLOPs
    batch_size: int | None = None
    continuous: bool | None = None  # AdaFocusV3 batching: None/True continuous (the default), False static
    visualize: str | Path | None = None  # AdaFocusV3: draw the cubes (png/jpg/mp4/avi)
    threads: int | None = None  # backends that take it (onnxruntime, torch)
    checkpoint: str | Path | None = None  # the torch backend: the checkpoint the bundle was exported from
    decode_workers: int = 1  # threads decoding the next videos while the model runs (0: inline)


@dataclass
class PredictRun:
    """What a prediction run produced."""

    recognizer: Recognizer
    options: PredictOptions
    views: tuple[int, int]
    results: list[Prediction] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video, error message)
    thresholds: ExitThresholds | None = None
    visualizations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (encode with :func:`videploy.jsonsafe.dumps`)."""
        rec = self.recognizer
        m = rec.manifest
        c = rec.counters
        return {
            "bundle": str(rec.bundle.root),
            "model": m.model_name,
            "family": m.family,
            "backend": rec.backend.name,
            "device": rec.backend.device,
            "random_weights": rec.random_weights,
            "views": {"clips": self.views[0], "crops": self.views[1]},
            "thresholds": None if self.thresholds is None else self.thresholds.to_dict(),
            "work": {"calls": dict(c.calls), "rows": dict(c.rows)},
            "results": [r.to_dict() for r in self.results],
            "errors": [{"source": s, "error": e} for s, e in self.failures],
            "visualizations": list(self.visualizations),
            "notes": list(self.notes),
        }


def open_recognizer(bundle: BundleLike, options: PredictOptions, notes: list[str] | None = None) -> Recognizer:
    """The bundle on the backend the options ask for; option errors name the flag and the fix.
    Without a backend, the bundle's measured default is used and ``notes`` is told why."""
    from videploy.bench.default_backend import default_backend
    from videploy.bundle.bundle import Bundle

    backend = options.backend
    if backend is None:
        bundle = Bundle.of(bundle)
        backend, note = default_backend(bundle, options.device, options.precision)
        if note is not None and notes is not None:
            notes.append(note)
    backend_options: dict[str, Any] = {}
    if options.threads is not None:
        backend_options["threads"] = options.threads
    if options.checkpoint is not None:
        backend_options["checkpoint"] = options.checkpoint
    return Recognizer(
        bundle, backend=backend, device=options.device, labels=options.labels, precision=options.precision, decode_workers=options.decode_workers, **backend_options
    )


def predict_files(
    bundle: BundleLike | Recognizer,
    videos: Sequence[str | Path],
    options: PredictOptions = PredictOptions(),
    on_failure: Callable[[str, str], None] | None = None,
    on_result: Callable[[PredictRun, Prediction], None] | None = None,
) -> PredictRun:
    """Predict ``videos`` (see the module docstring). ``on_failure(video, message)`` is told of each
    video that cannot be decoded and ``on_result(run, prediction)`` of each result, as they happen
    (results stream in input order; with ``budget`` they come after the fitting pass)."""
    notes: list[str] = []
    rec = bundle if isinstance(bundle, Recognizer) else open_recognizer(bundle, options, notes)
    _check_options(rec, options)
    views = rec.views(options.views)  # validated before anything is decoded
    check_view_counts(*views)
    if options.visualize:
        from videploy.runtime.visualize import check_output_path

        check_output_path(options.visualize)
    run = PredictRun(recognizer=rec, options=options, views=views, notes=notes)

    def failed(video: str, exc: VideployError) -> None:
        run.failures.append((video, str(exc)))
        if on_failure is not None:
            on_failure(video, str(exc))

    # the display crops are only drawn by --visualize; dropping them keeps a long run flat
    keep_display = bool(options.visualize)

    def emit(result: Prediction) -> None:
        run.results.append(result)
        if on_result is not None:
            on_result(run, result)

    if rec.adaptive is not None and options.budget is not None:
        _predict_fitted(rec, rec.prepare_stream(videos, options.views, failed, keep_display), options, run, emit)
    else:
        if rec.adaptive is not None:
            run.thresholds = resolve_exit_thresholds(rec, thresholds=options.thresholds)
        thresholds = list(run.thresholds.values) if run.thresholds is not None else None
        stream = rec.iter_predict(videos, options.top_k, options.views, thresholds, options.batch_size, options.continuous is not False, on_error=failed, keep_display=keep_display)
        for result in stream:
            emit(result)
    if options.visualize:
        from videploy.runtime.visualize import write_visualization

        for i, r in enumerate(run.results):
            run.visualizations.append(str(write_visualization(r, _numbered(options.visualize, i, len(run.results)))))
    return run


def _predict_fitted(
    rec: Recognizer, prepared: Iterator[tuple[VideoInput, float, float]], options: PredictOptions, run: PredictRun, emit: Callable[[Prediction], None]
) -> None:
    """``--budget``: fit thresholds on the inputs themselves (a demonstration of Eq. 7) in ONE pass.

    Each video is decoded once and runs every step once, keeping only its per-exit logits (not its
    frames); the thresholds are fitted on all of them, then each result is the exit the fitted
    thresholds pick, with that exit's logits and cost (the rule the runner applies live).
    """
    ee = rec.adaptive.ee
    kept: list[tuple[VideoInput, AdaptiveOutcome, Timing]] = []
    metas: list[tuple[VideoInput, float, float]] = []

    def frames() -> Iterator[np.ndarray]:
        for vi, t0, decode in prepared:
            metas.append((dataclasses.replace(vi, views=np.empty((0,), dtype=np.float32)), t0, decode))
            yield vi.views[0]

    all_steps = [never_stops(ee.criterion)] * (ee.num_steps + 1)
    for i, oc in enumerate(rec.adaptive.iter_run(frames(), thresholds=all_steps, batch_size=options.batch_size, continuous=options.continuous is not False, keep_exit_logits=True)):
        vi, t0, decode = metas[i]
        kept.append((vi, oc, Timing(decode, time.perf_counter() - t0)))
    if not kept:
        return
    run.thresholds = thresholds_from_values(np.array([oc.entropies for _, oc, _ in kept]), ee.exit_gflops, options.budget, ee.criterion)
    run.notes.append(
        "--budget: every video ran all focus steps once, to measure the entropies the thresholds are fitted on; each result is the "
        "exit those thresholds pick (its logits and cost), and the work counters are those of that one pass"
    )
    eta = run.thresholds.values
    for vi, oc, timing in kept:
        t = exit_step(oc.entropies, eta, ee.criterion)
        at_exit = dataclasses.replace(
            oc, exit=t, logits=oc.exit_logits[t], entropies=oc.entropies[: t + 1], cubes=oc.cubes[:t], gflops=float(ee.exit_gflops[t]), thresholds=tuple(eta), exit_logits=None
        )
        emit(rec.adaptive_prediction(vi, at_exit, options.top_k, timing))


def _check_options(rec: Recognizer, options: PredictOptions) -> None:
    m = rec.manifest
    if options.top_k < 1:
        raise VideployError(f"--top-k must be >= 1, got {options.top_k}")
    if rec.adaptive is None:
        for flag, value in (("--thresholds", options.thresholds), ("--budget", options.budget), ("--visualize", options.visualize), ("--continuous / --no-continuous", options.continuous)):
            if value is not None:
                raise VideployError(f"{flag} is for adaptive (AdaFocusV3) bundles; {m.model_name!r} is a {m.family} bundle")


def _numbered(base: str | Path, index: int, count: int) -> Path:
    p = Path(base)
    return p if count == 1 else p.with_name(f"{p.stem}_{index + 1}{p.suffix}")
