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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from videploy.bundle.bundle import BundleLike
from videploy.calibration.fit_on_videos import ExitThresholds, resolve_exit_thresholds
from videploy.errors import VideployError
from videploy.runtime.recognizer import Prediction, Recognizer
from videploy.runtime.video import VideoInput, check_view_counts


@dataclass(frozen=True)
class PredictOptions:
    """How to predict. ``None`` means the default (the backend's device, the bundle's batch, ...)."""

    backend: str = "onnxruntime"
    device: str | None = None
    precision: str | None = None
    labels: str | Path | None = None
    top_k: int = 5
    views: str | None = None  # "CLIPSxCROPS" or "official"
    thresholds: Sequence[float] | None = None  # AdaFocusV3: eta_0..eta_T
    budget: float | None = None  # AdaFocusV3: fit thresholds on the inputs for this average GFLOPs
    batch_size: int | None = None
    continuous: bool = False  # AdaFocusV3: continuous batching
    visualize: str | Path | None = None  # AdaFocusV3: draw the cubes (png/jpg/mp4/avi)
    threads: int | None = None  # backends that take it (onnxruntime, torch)
    checkpoint: str | Path | None = None  # the torch backend: the checkpoint the bundle was exported from


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
        }


def open_recognizer(bundle: BundleLike, options: PredictOptions) -> Recognizer:
    """The bundle on the backend the options ask for; option errors name the flag and the fix."""
    backend_options: dict[str, Any] = {}
    if options.threads is not None:
        backend_options["threads"] = options.threads
    if options.checkpoint is not None:
        backend_options["checkpoint"] = options.checkpoint
    return Recognizer(bundle, backend=options.backend, device=options.device, labels=options.labels, precision=options.precision, **backend_options)


def predict_files(
    bundle: BundleLike | Recognizer,
    videos: Sequence[str | Path],
    options: PredictOptions = PredictOptions(),
    on_failure: Callable[[str, str], None] | None = None,
) -> PredictRun:
    """Predict ``videos`` (see the module docstring). ``on_failure(video, message)`` is told of each
    video that cannot be decoded, as it happens."""
    rec = bundle if isinstance(bundle, Recognizer) else open_recognizer(bundle, options)
    _check_options(rec, options)
    views = rec.views(options.views)  # validated before anything is decoded
    check_view_counts(*views)
    if options.visualize:
        from videploy.runtime.visualize import check_output_path

        check_output_path(options.visualize)
    run = PredictRun(recognizer=rec, options=options, views=views)

    def prepared() -> Iterator[VideoInput]:
        for v in videos:
            try:
                vi = rec.prepare(v, options.views)
            except VideployError as exc:
                run.failures.append((str(v), str(exc)))
                if on_failure is not None:
                    on_failure(str(v), str(exc))
                continue
            # the display crops are only drawn by --visualize; drop them so a long run stays flat
            yield vi if options.visualize else dataclasses.replace(vi, display_frames=None)

    source: Any = prepared()
    if rec.adaptive is not None:
        if options.budget is not None:
            source = list(source)  # fitted on the inputs themselves (a demonstration): they are needed twice
        run.thresholds = resolve_exit_thresholds(rec, source, thresholds=options.thresholds, budget=options.budget, batch_size=options.batch_size)
        rec.counters.reset()  # report the work of the real (early-exit) run only
    thresholds = list(run.thresholds.values) if run.thresholds is not None else None
    run.results = rec.predict_batch(source, top_k=options.top_k, thresholds=thresholds, batch_size=options.batch_size, continuous=options.continuous)
    if options.visualize:
        from videploy.runtime.visualize import write_visualization

        for i, r in enumerate(run.results):
            run.visualizations.append(str(write_visualization(r, _numbered(options.visualize, i, len(run.results)))))
    return run


def _check_options(rec: Recognizer, options: PredictOptions) -> None:
    m = rec.manifest
    if options.top_k < 1:
        raise VideployError(f"--top-k must be >= 1, got {options.top_k}")
    if rec.adaptive is None:
        for flag, value in (("--thresholds", options.thresholds), ("--budget", options.budget), ("--visualize", options.visualize), ("--continuous", options.continuous or None)):
            if value is not None:
                raise VideployError(f"{flag} is for adaptive (AdaFocusV3) bundles; {m.model_name!r} is a {m.family} bundle")


def _numbered(base: str | Path, index: int, count: int) -> Path:
    p = Path(base)
    return p if count == 1 else p.with_name(f"{p.stem}_{index + 1}{p.suffix}")
