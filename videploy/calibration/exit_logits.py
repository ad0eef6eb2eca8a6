"""Every exit's logits of an AdaFocusV3 bundle on labelled videos: the input of threshold fitting.

Fitting needs what the official evaluation keeps: the logits of *every* exit for every video, so
each video runs all focus steps (no early exit). Only :func:`_all_exits` talks to the graphs, in
the order of the deployment graph contract (glance -> policy -> local step 0 .. T-1 with per-row
``step``), so it is the one place to change if the runtime grows a call that returns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from videploy.errors import VideployError
from videploy.runtime.recognizer import Recognizer
from videploy.runtime.video import VideoInput, VideoSource


@dataclass(frozen=True)
class ExitLogits:
    logits: np.ndarray  # (videos, exits, classes) float32, for the videos that decoded
    kept: tuple[int, ...]  # input positions of those videos
    failures: tuple[tuple[int, str], ...]  # (input position, reason) of the videos that did not


def collect_exit_logits(recognizer: Recognizer, videos: Iterable[VideoSource | VideoInput], batch_size: int | None = None) -> ExitLogits:
    """Run every video through all exits; a video that cannot be decoded is reported, not fatal."""
    if recognizer.adaptive is None:
        m = recognizer.manifest
        raise VideployError(f"exit thresholds are for adaptive (AdaFocusV3) bundles; {m.model_name!r} is a {m.family} bundle")
    bs = recognizer.manifest.batch.max if batch_size is None else int(batch_size)
    if not 1 <= bs <= recognizer.manifest.batch.max:
        raise VideployError(f"batch size must be between 1 and the bundle's maximum {recognizer.manifest.batch.max}, got {bs}")
    chunks: list[np.ndarray] = []
    kept: list[int] = []
    failures: list[tuple[int, str]] = []
    group: list[np.ndarray] = []

    def flush() -> None:
        if group:
            chunks.append(_all_exits(recognizer, np.stack(group)))
            group.clear()

    for i, v in enumerate(videos):
        try:
            vi = recognizer.prepare(v)
        except VideployError as exc:
            failures.append((i, str(exc)))
            continue
        kept.append(i)
        group.append(vi.views[0])
        if len(group) == bs:
            flush()
    flush()
    ee = recognizer.manifest.early_exit
    empty = np.zeros((0, ee.num_steps + 1, recognizer.manifest.num_classes), dtype=np.float32)
    return ExitLogits(np.concatenate(chunks) if chunks else empty, tuple(kept), tuple(failures))


def _all_exits(recognizer: Recognizer, frames: np.ndarray) -> np.ndarray:
    """(B, num_segments, 3, H, W) sampled frames -> (B, num_steps + 1, classes) logits of every exit."""
    m = recognizer.manifest
    ee = m.early_exit
    n = frames.shape[0]
    frames = frames.astype(m.graph("glance").input("frames").dtype, copy=False)
    glance = _run(recognizer, "glance", {"frames": frames[:, list(ee.glance_indices)]})
    exits = [np.asarray(glance["logits"], dtype=np.float32)]
    if ee.num_steps == 0:
        return np.stack(exits, axis=1)
    policy = _run(recognizer, "policy", {"featmap": glance["featmap"], "global_feat": glance["global_feat"]})
    fidx = np.asarray(policy["frame_indices"]).astype(np.int64).reshape(n, ee.num_steps, -1)
    if fidx.min() < 0 or fidx.max() >= ee.num_segments:
        raise VideployError(f"the policy graph chose frame indices outside [0, {ee.num_segments}); the bundle's graphs are inconsistent, re-export it")
    local = m.graph("local")
    actions = np.asarray(policy["actions"]).astype(local.input("action").dtype)
    last = local.input("local_state").shape[-1]
    state = np.zeros((n, last if isinstance(last, int) else ee.state_size), dtype=local.input("local_state").dtype)
    rows = np.arange(n)[:, None]
    for t in range(ee.num_steps):
        out = _run(
            recognizer,
            "local",
            {
                "frames": frames[rows, fidx[:, t]],
                "action": actions[:, t],
                "step": np.full(n, t, dtype=np.int64),
                "local_state": state,
                "global_state": glance["global_state"],
            },
        )
        exits.append(np.asarray(out["logits"], dtype=np.float32))
        state = np.asarray(out["next_local_state"])
    return np.stack(exits, axis=1)


def _run(recognizer: Recognizer, role: str, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One graph call with every output on the host; a fixed-batch bundle gets copies of row 0 as padding."""
    n = int(next(iter(inputs.values())).shape[0])
    pad = recognizer.manifest.batch.min - n
    if pad > 0:
        inputs = {k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for k, v in inputs.items()}
    out = recognizer.backend.run(role, inputs)
    return {k: np.asarray(recognizer.backend.to_host(v))[:n] for k, v in out.items()}
