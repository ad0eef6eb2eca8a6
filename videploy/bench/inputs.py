"""Benchmark inputs made of real decoded frames: a stream of clips, and graph inputs per role.

Timing random tensors would hide nothing in a dense graph, but AdaFocusV3's cost depends on what
it sees (where its videos exit), so every input here comes from real video: the runtime's own
decoding and preprocessing (:func:`videploy.runtime.video.load_video`).

A *stream* of ``count`` different videos is cut from one or a few files: each file is decoded once
(frames downscaled to the model's resize size as they are read, at most ``max_frames`` kept), and
clip ``i`` is a time window of it, every other one mirrored left-right. The clips overlap, but
their sampled frames, crops and (for AdaFocusV3) exits differ, which is what static vs continuous
batching needs to show a difference.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from videploy.bundle.manifest import Manifest, Preprocessing
from videploy.errors import VideployError
from videploy.runtime.backends.base import Backend
from videploy.runtime.video import VideoInput, load_video

MAX_FRAMES = 160


def read_frames(path: str | Path, short_side: int, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """Up to ``max_frames`` frames of ``path`` as (T, H, W, 3) uint8 RGB, short side scaled down to ``short_side``."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideployError(f"OpenCV cannot open {str(path)!r} as a video; pass a readable video file with --video")
    frames = []
    try:
        while len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            h, w = bgr.shape[:2]
            if short_side > 0 and min(h, w) > short_side:
                s = short_side / min(h, w)
                bgr = cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise VideployError(f"no frame of {str(path)!r} could be decoded; pass a readable video file with --video")
    return np.stack(frames)


def clip_stream(videos: Sequence[str | Path], count: int, preprocessing: Preprocessing, max_frames: int = MAX_FRAMES) -> list[VideoInput]:
    """``count`` preprocessed clips (one view each) cut from ``videos`` in turn; see the module docstring."""
    if count < 1:
        raise VideployError(f"--videos must be >= 1, got {count}")
    if not videos:
        raise VideployError("a benchmark stream needs at least one video file")
    pre = preprocessing
    short = pre.resize_short if pre.resize_short > 0 else max(pre.crop_size)
    decoded = [(Path(v).name, read_frames(v, short, max_frames)) for v in videos]
    per_file = [list(range(i, count, len(decoded))) for i in range(len(decoded))]
    out: dict[int, VideoInput] = {}
    for (name, frames), clips in zip(decoded, per_file):
        n = frames.shape[0]
        length = max(min(n, pre.num_frames), n // 2)
        starts = np.linspace(0, n - length, num=max(len(clips), 1)).round().astype(int)
        for j, (clip, start) in enumerate(zip(clips, starts)):
            window = frames[start : start + length]
            mirrored = j % 2 == 1
            if mirrored:
                window = np.ascontiguousarray(window[:, :, ::-1])
            vi = load_video(window, pre)
            label = f"{name}[{start}:{start + length}]" + (" mirrored" if mirrored else "")
            out[clip] = dataclasses.replace(vi, source=label, display_frames=None)
    return [out[i] for i in range(count)]


def static_inputs(manifest: Manifest, stream: Sequence[VideoInput], batch: int) -> dict[str, np.ndarray]:
    """Input of a single-graph bundle's ``main`` at ``batch`` rows: the stream's views, cycled."""
    spec = manifest.graph("main").input("video")
    rows = [stream[i % len(stream)].views[0] for i in range(batch)]
    return {"video": np.stack(rows).astype(spec.dtype, copy=False)}


def adaptive_inputs(manifest: Manifest, stream: Sequence[VideoInput], batch: int, backend: Backend) -> dict[str, dict[str, np.ndarray]]:
    """Inputs of AdaFocusV3's ``glance``, ``policy`` and ``local`` graphs at ``batch`` rows, as a real run feeds them.

    The glance sees each clip's glance frames; the policy gets the glance's feature maps; the local
    encoder gets the cube the policy chose at step ``row % num_steps`` (so several steps' classifiers
    are in the batch, as in continuous batching), a zero local state (the state before step 1) and
    the glance's global state. ``backend`` computes the intermediate features (host arrays).
    """
    ee = manifest.early_exit
    if ee is None:
        raise VideployError(f"{manifest.model_name!r} is not an AdaFocusV3 bundle")
    glance_spec = manifest.graph("glance").input("frames")
    views = [stream[i % len(stream)].views[0] for i in range(batch)]
    frames = np.stack([v[list(ee.glance_indices)] for v in views]).astype(glance_spec.dtype, copy=False)
    glance = {"frames": frames}
    g = _host(backend, backend.run("glance", glance))
    policy = {"featmap": g["featmap"], "global_feat": g["global_feat"]}
    p = _host(backend, backend.run("policy", policy))
    fidx = np.asarray(p["frame_indices"]).astype(np.int64).reshape(batch, ee.num_steps, -1)
    steps = np.arange(batch, dtype=np.int64) % ee.num_steps
    local_graph = manifest.graph("local")
    dt = {t.name: t.dtype for t in local_graph.inputs}
    state = local_graph.input("local_state").shape[-1]
    state_size = state if isinstance(state, int) else ee.state_size
    local = {
        "frames": np.stack([views[i][fidx[i, steps[i]]] for i in range(batch)]).astype(dt["frames"], copy=False),
        "action": np.stack([np.asarray(p["actions"])[i, steps[i]] for i in range(batch)]).astype(dt["action"], copy=False),
        "step": steps.astype(dt["step"], copy=False),
        "local_state": np.zeros((batch, state_size), dtype=dt["local_state"]),
        "global_state": np.asarray(g["global_state"]).astype(dt["global_state"], copy=False),
    }
    return {"glance": glance, "policy": policy, "local": local}


def rows(inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` rows of every input (graphs are row-independent)."""
    return {k: np.ascontiguousarray(v[:n]) for k, v in inputs.items()}


def _host(backend: Backend, out: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: backend.to_host(v) for k, v in out.items()}
