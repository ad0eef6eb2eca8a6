"""Which frames of a video each family looks at, exactly as its official evaluation picks them.

Every function maps a frame count ``n`` to integer indices of shape ``(num_clips, T)``; all indices
are in ``[0, n)``. ``num_clips == 1`` is the official single-view evaluation; further clips shift
the sampling grid inside each interval (see each function). The formulas, written out:

``clip`` — Video-FocalNet evaluates with mmaction's ``SampleFrames(clip_len=1, frame_interval=fi,
num_clips=T, test_mode=True)``: the span ``n - fi + 1`` is cut into ``T`` equal intervals of
length ``a = (n - fi + 1) / T`` and the centre of each is taken, ``idx_t = int(a * t + a / 2)``.
If ``n < fi`` every offset is 0. Out-of-range indices wrap around (``idx mod n``, mmaction's
``out_of_bound_opt='loop'``), which is how short videos are handled. For multi-clip testing the
official code switches to *random* training-mode offsets; we use the deterministic
``idx_t = int(a * t + a * (j + 1/2) / N)`` for clip ``j`` of ``N`` (``N = 1`` is the official grid).

``uniform`` — STAM's evaluation (torchvision ``Kinetics400(frames_per_clip=T, frame_rate=1.6,
step_between_clips=1000)``) resamples the video to a fixed rate from its first frame and keeps
the first ``T`` frames, i.e. on the ~10 s Kinetics clips ``T`` frames evenly spaced from frame 0:
``idx_t = floor(t * n / T)``. We apply that spacing to any length, so a longer or shorter video
is still covered end to end (the fixed 1.6 fps would see only its first 10 s, or drop a short
video entirely). Clip ``j`` of ``N`` starts ``j / N`` of a step later.

``segments`` — AdaFocusV3 (TSN evaluation, Uni-AdaFocus ``_get_val_indices``): the centre frame of
each of ``T`` equal segments, ``idx_t = floor((t + 1/2) * n / T)`` (the official code adds 1
because its frames are 1-based JPEG files). Clip ``j`` of ``N`` uses ``(t + (j + 1/2) / N)``.

For ``n < T`` all three repeat frames (as the official samplers do); :func:`sample_indices`
reports that so results can say so.
"""

from __future__ import annotations

import numpy as np

from videploy.errors import VideployError

SAMPLINGS = ("clip", "uniform", "segments")


def clip_indices(num_frames: int, length: int, frame_interval: int = 1, num_clips: int = 1) -> np.ndarray:
    """mmaction test-mode ``SampleFrames`` with ``clip_len=1`` (Video-FocalNet). Shape (num_clips, length)."""
    n = _check(num_frames, length, num_clips)
    span = n - frame_interval + 1
    if span <= 0:
        idx = np.zeros((num_clips, length), dtype=np.int64)
    else:
        a = span / float(length)
        shift = (np.arange(num_clips, dtype=np.float64) + 0.5) / num_clips
        idx = (a * np.arange(length, dtype=np.float64)[None, :] + a * shift[:, None]).astype(np.int64)
    return np.mod(idx, n)


def uniform_indices(num_frames: int, length: int, num_clips: int = 1) -> np.ndarray:
    """STAM: ``length`` frames evenly spaced from the first frame. Shape (num_clips, length)."""
    n = _check(num_frames, length, num_clips)
    # exact integer arithmetic: floor((t + j / N) * n / T) = ((t * N + j) * n) // (T * N)
    t = np.arange(length, dtype=np.int64)[None, :]
    j = np.arange(num_clips, dtype=np.int64)[:, None]
    return ((t * num_clips + j) * n) // (length * num_clips)


def segment_indices(num_frames: int, length: int, num_clips: int = 1) -> np.ndarray:
    """TSN / AdaFocusV3: centre frame of each of ``length`` equal segments. Shape (num_clips, length)."""
    n = _check(num_frames, length, num_clips)
    shift = (np.arange(num_clips, dtype=np.float64) + 0.5) / num_clips
    # the official operation order ((t + 1/2) / T * n, in float64) so boundary cases round alike
    pos = (np.arange(length, dtype=np.float64)[None, :] + shift[:, None]) / length * n
    return np.minimum(np.floor(pos).astype(np.int64), n - 1)


def sample_indices(sampling: str, num_frames: int, length: int, num_clips: int = 1, frame_interval: int = 1) -> np.ndarray:
    """Dispatch on the manifest's ``Preprocessing.sampling``. Shape (num_clips, length)."""
    if sampling == "clip":
        return clip_indices(num_frames, length, frame_interval=frame_interval, num_clips=num_clips)
    if sampling == "uniform":
        return uniform_indices(num_frames, length, num_clips=num_clips)
    if sampling == "segments":
        return segment_indices(num_frames, length, num_clips=num_clips)
    raise VideployError(f"unknown frame sampling {sampling!r}; the bundle manifest must use one of {SAMPLINGS}")


def _check(num_frames: int, length: int, num_clips: int) -> int:
    if num_frames < 1:
        raise VideployError(f"cannot sample frames from a video with {num_frames} frames")
    if length < 1 or num_clips < 1:
        raise VideployError(f"frames per clip ({length}) and clips ({num_clips}) must be >= 1")
    return int(num_frames)
