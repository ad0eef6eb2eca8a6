"""Benchmark inputs made of real decoded frames: a stream of clips, and graph inputs per role.

Timing random tensors would hide nothing in a dense graph, but AdaFocusV3's cost depends on what
it sees (where its videos exit), so every input here comes from real video: the runtime's own
decoding and preprocessing (:func:`videploy.runtime.video.load_video`).

A *stream* of ``count`` different videos is cut from one or a few files: each file is decoded once
by the runtime's reader (:func:`videploy.runtime.video.read_frames`: frames downscaled to the
model's resize size as they are read, at most ``max_frames`` kept), and
clip ``i`` is a time window of it, every other one mirrored left-right. The clips overlap, but
their sampled frames, crops and (for AdaFocusV3) exits differ, which is what static vs continuous
batching needs to show a difference.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from videploy.bundle.manifest import Manifest, Preprocessing
from videploy.errors import VideployError
from videploy.runtime.backends.base import Backend
from videploy.runtime.recognizer import Recognizer
from videploy.runtime.video import VideoInput, load_video, read_frames

MAX_FRAMES = 160


def clip_stream(videos: Sequence[str | Path], count: int, preprocessing: Preprocessing, max_frames: int = MAX_FRAMES) -> list[VideoInput]:
    """``count`` preprocessed clips (one view each) cut from ``videos`` in turn; see the module docstring."""
    if count < 1:
        raise VideployError(f"--videos must be >= 1, got {count}")
    if not videos:
        raise VideployError("a benchmark stream needs at least one video file")
    pre = preprocessing
    short = pre.resize_short if pre.resize_short > 0 else max(pre.crop_size)
    decoded = [(Path(v).name, read_frames(v, max_frames, short)) for v in videos]
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


def write_clip_files(sources: Sequence[str | Path], count: int, length: int, out: Path) -> list[str]:
    """``count`` distinct mp4 files of up to ``length`` frames cut from ``sources`` in turn, at their
    resolution: time windows a third of ``length`` apart, every other turn mirrored. End-to-end
    timing needs real files, and distinct ones: AdaFocusV3's exits (and so its savings) differ
    only between different videos."""
    import cv2

    clips = []
    for i in range(count):
        src = str(sources[i % len(sources)])
        turn = i // len(sources)
        cap = cv2.VideoCapture(src)
        writer = None
        try:
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            start = (turn * length // 3) % max(1, n - length) if n > length else 0
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            path = Path(out) / f"clip{i:03d}.mp4"
            for _ in range(length):
                ok, frame = cap.read()
                if not ok:
                    break
                frame = frame[:, ::-1] if turn % 2 else frame
                if writer is None:
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
                writer.write(np.ascontiguousarray(frame))
        finally:
            cap.release()
            if writer is not None:
                writer.release()  # also when reading fails half-way: no open file handle left behind
        if writer is not None:
            clips.append(str(path))
    if not clips:
        raise VideployError(f"no frames could be read from {', '.join(str(s) for s in sources)} to write benchmark clips")
    return clips


def static_inputs(manifest: Manifest, stream: Sequence[VideoInput], batch: int) -> dict[str, np.ndarray]:
    """Input of a single-graph bundle's ``main`` at ``batch`` rows: the stream's views, cycled."""
    spec = manifest.graph("main").input("video")
    rows = [stream[i % len(stream)].views[0] for i in range(batch)]
    return {"video": np.stack(rows).astype(spec.dtype, copy=False)}


def adaptive_inputs(stream: Sequence[VideoInput], batch: int, backend: Backend) -> dict[str, dict[str, np.ndarray]]:
    """Inputs of AdaFocusV3's ``glance``, ``policy`` and ``local`` graphs at ``batch`` rows, as a real run feeds them.

    The stream's first ``batch`` clips (cycled) run once through the runtime's chain on ``backend``
    with every exit forced, and the calls are recorded: the glance and the policy get exactly what
    that run fed them; the local encoder gets row ``i`` of the call at step ``i % num_steps`` (the
    cube the policy chose, the state carried so far), so several steps' classifiers share the
    batch, as in continuous batching.
    """
    rec = Recognizer(backend.bundle, backend=backend)
    if rec.adaptive is None:
        raise VideployError(f"{backend.bundle.name!r} is not an AdaFocusV3 bundle")
    ee = rec.adaptive.ee
    views = [stream[i % len(stream)].views[0] for i in range(batch)]
    with backend.recording() as calls:
        rec.adaptive.run(views, thresholds=[-math.inf] * (ee.num_steps + 1), batch_size=batch)
    first = {c.role: c.inputs for c in reversed(calls)}
    local_calls = [c.inputs for c in calls if c.role == "local"]
    steps = np.arange(batch) % ee.num_steps
    local = {name: np.ascontiguousarray(np.stack([local_calls[steps[i]][name][i] for i in range(batch)])) for name in local_calls[0]}
    return {"glance": first["glance"], "policy": first["policy"], "local": local}


def rows(inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` rows of every input (graphs are row-independent)."""
    return {k: np.ascontiguousarray(v[:n]) for k, v in inputs.items()}
