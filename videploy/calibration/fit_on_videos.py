"""Which exit thresholds an AdaFocusV3 run uses, fitted on videos when asked: the one use case
behind ``videploy predict --thresholds/--budget`` and ``videploy bench``.

Order: thresholds given by the caller; else a compute budget, fitted on the given videos (paper
Eq. 7, :func:`videploy.calibration.exit_thresholds.fit_exit_thresholds`) -- which only
demonstrates the mechanism, since the videos fitted on are the ones being measured; else the
bundle's own (written by calibration on labelled videos); else the caller's ``default``:
``"none"`` (every video runs every step) or ``"equal exits"`` (fitted on the videos so that an
equal share leaves at every exit: what a benchmark of early exit and continuous batching needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from videploy.calibration.exit_thresholds import expected_gflops, fit_exit_thresholds, fit_thresholds
from videploy.errors import VideployError
from videploy.runtime.exit_criteria import never_stops
from videploy.runtime.recognizer import Recognizer
from videploy.runtime.video import VideoInput

Default = Literal["none", "equal exits"]


@dataclass(frozen=True)
class ExitThresholds:
    """Thresholds eta_0..eta_T and where they came from."""

    values: tuple[float, ...]
    source: str  # "given", "budget", "bundle", "equal exits", "none (all steps)"
    budget: float | None = None
    expected_gflops: float | None = None  # the fitted solution's average on the videos fitted on
    q: float | None = None
    exit_fractions: tuple[float, ...] | None = None
    fitted_on: int = 0  # videos the fit used (0: not fitted)

    @property
    def note(self) -> str | None:
        if self.source == "budget":
            return (
                f"thresholds fitted on the {self.fitted_on} input video(s) themselves for {self.budget:g} GFLOPs/video: a demonstration "
                "of Eq. 7; fit them on a calibration set of labelled, representative videos for real use (videploy calibrate-exits)"
            )
        if self.source == "equal exits":
            return f"thresholds fitted on the {self.fitted_on} video(s) so that an equal share leaves at every exit"
        return None

    def to_dict(self) -> dict[str, Any]:
        from videploy.jsonsafe import encode_float

        return {
            "values": [encode_float(x) for x in self.values],
            "source": self.source,
            "budget_gflops": self.budget,
            "expected_gflops": self.expected_gflops,
            "q": self.q,
            "exit_fractions": None if self.exit_fractions is None else list(self.exit_fractions),
            "fitted_on": self.fitted_on,
            "note": self.note,
        }


def resolve_exit_thresholds(
    rec: Recognizer,
    videos: Iterable[VideoInput] | None = None,
    thresholds: Sequence[float] | None = None,
    budget: float | None = None,
    batch_size: int | None = None,
    default: Default = "none",
) -> ExitThresholds:
    """The thresholds for an AdaFocusV3 run on ``rec`` (see the module docstring for the order).

    ``videos`` are needed only when fitting (a budget, or the ``"equal exits"`` default); each is
    run once with every exit forced to measure its entropy at every exit.
    """
    if rec.adaptive is None:
        raise VideployError(f"exit thresholds apply to adaptive (AdaFocusV3) bundles; {rec.manifest.model_name!r} is a {rec.manifest.family} bundle")
    if thresholds is not None and budget is not None:
        raise VideployError("give either --thresholds or --budget, not both")
    ee = rec.adaptive.ee
    if thresholds is not None:
        return ExitThresholds(tuple(float(x) for x in rec.adaptive.thresholds(thresholds)), "given")
    if budget is None and ee.thresholds is not None:
        return ExitThresholds(tuple(float(x) for x in ee.thresholds), "bundle")
    if budget is None and default == "none":
        return ExitThresholds(tuple([never_stops(ee.criterion)] * (ee.num_steps + 1)), "none (all steps)")
    return thresholds_from_values(exit_values(rec, videos or [], batch_size), ee.exit_gflops, budget, ee.criterion)


def thresholds_from_values(values: np.ndarray, exit_gflops: Sequence[float], budget: float | None, criterion: str = "entropy") -> ExitThresholds:
    """Fit on (videos, exits) criterion values: for ``budget`` GFLOPs per video (Eq. 7), or, with
    None, so that an equal share of the videos leaves at every exit."""
    values = np.asarray(values, dtype=np.float64)
    if budget is None:
        # an exit whose criterion is the same for every clip (an untrained head: random weights give a
        # uniform glance softmax) cannot separate them, so it gets no share rather than all the ties
        spread = values.max(axis=0) - values.min(axis=0)
        shares = (spread > 1e-6 * np.maximum(1.0, np.abs(values).max(axis=0))).astype(np.float64)
        shares[-1] = 1.0
        eta = fit_thresholds(values, shares / shares.sum(), criterion)
        return ExitThresholds(tuple(float(x) for x in eta), "equal exits", None, expected_gflops(values, eta, exit_gflops, criterion), fitted_on=len(values))
    sol = fit_exit_thresholds(values, exit_gflops, float(budget), criterion)
    return ExitThresholds(tuple(sol.thresholds), "budget", float(budget), sol.expected_gflops, sol.q, tuple(sol.exit_fractions), len(values))


def exit_values(rec: Recognizer, videos: Iterable[VideoInput], batch_size: int | None = None) -> np.ndarray:
    """(videos, exits) criterion values of every video at every exit (every step forced)."""
    ee = rec.adaptive.ee
    full = rec.predict_batch(videos, thresholds=[never_stops(ee.criterion)] * (ee.num_steps + 1), batch_size=batch_size)
    if not full:
        raise VideployError("fitting exit thresholds needs at least one video that decodes")
    return np.array([p.adaptive.entropies for p in full], dtype=np.float64)


def store_thresholds(bundle: str | Path, thresholds: Sequence[float], criterion: str) -> None:
    """Replace a bundle's exit thresholds and criterion, atomically (the whole bundle is swapped):
    ``videploy predict`` then uses them by default."""
    import dataclasses

    from videploy.bundle.manifest import read_manifest, write_manifest
    from videploy.bundle.writer import updating_bundle

    with updating_bundle(Path(bundle)) as stage:
        m = read_manifest(stage)
        ee = dataclasses.replace(m.early_exit, thresholds=tuple(float(x) for x in thresholds), criterion=criterion)
        write_manifest(stage, dataclasses.replace(m, early_exit=ee))
        read_manifest(stage)  # what was written must read back before it replaces the bundle
