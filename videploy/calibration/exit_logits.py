"""Every exit's logits of an AdaFocusV3 bundle on labelled videos: the input of threshold fitting.

Fitting needs what the official evaluation keeps: the logits of *every* exit for every video, so
each video runs all focus steps (no early exit) through the runtime's one AdaFocusV3 chain
(:class:`~videploy.runtime.adaptive.AdaptiveRunner` with ``keep_exit_logits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from videploy.errors import VideployError
from videploy.runtime.exit_criteria import never_stops
from videploy.runtime.recognizer import Recognizer
from videploy.runtime.video import VideoInput, VideoSource


@dataclass(frozen=True)
class ExitLogits:
    logits: np.ndarray  # (videos, exits, classes) float32, for the videos that decoded
    kept: tuple[int, ...]  # input positions of those videos
    failures: tuple[tuple[int, str], ...]  # (input position, reason) of the videos that did not


def collect_exit_logits(recognizer: Recognizer, videos: Iterable[VideoSource | VideoInput], batch_size: int | None = None) -> ExitLogits:
    """Run every video through all exits (the runtime's one chain, no early exit, every exit's logits
    kept); a video that cannot be decoded is reported, not fatal."""
    if recognizer.adaptive is None:
        m = recognizer.manifest
        raise VideployError(f"exit thresholds are for adaptive (AdaFocusV3) bundles; {m.model_name!r} is a {m.family} bundle")
    ee = recognizer.adaptive.ee
    kept: list[int] = []
    failures: list[tuple[int, str]] = []

    def frames() -> Iterator[np.ndarray]:
        for i, v in enumerate(videos):
            try:
                vi = recognizer.prepare(v)
            except VideployError as exc:
                failures.append((i, str(exc)))
                continue
            kept.append(i)
            yield vi.views[0]

    never = [never_stops(ee.criterion)] * (ee.num_steps + 1)
    outcomes = recognizer.adaptive.iter_run(frames(), thresholds=never, batch_size=batch_size, keep_exit_logits=True)
    logits = [oc.exit_logits for oc in outcomes]
    empty = np.zeros((0, ee.num_steps + 1, recognizer.manifest.num_classes), dtype=np.float32)
    return ExitLogits(np.stack(logits).astype(np.float32) if logits else empty, tuple(kept), tuple(failures))
