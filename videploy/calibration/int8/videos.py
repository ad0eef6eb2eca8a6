"""Calibration videos: which files, and the clips the deployed model will see in them.

Sources (``videploy quantize --videos``) are any mix of

* video files;
* directories: every video file inside, recursively, in sorted order;
* ``.csv`` files: the first column is a video path (relative to the CSV's folder unless absolute);
  a header row whose first cell is not an existing file is skipped, as are empty lines.

Clips are decoded through the runtime's own path (:func:`videploy.runtime.video.load_video`, the
manifest's sampling and preprocessing), ``clips_per_video`` temporal clips per video (the
sampler's deterministic multi-clip offsets), so calibration sees exactly the views prediction
feeds the graphs. Clips are split into a calibration set and a held-out set by a fixed
interleaving (every ``holdout_every``-th clip is held out), so the agreement report is measured on
clips calibration never saw.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from videploy.bundle.manifest import Preprocessing
from videploy.errors import VideployError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")


@dataclass(frozen=True)
class Clip:
    """One view of one video, as the first graph receives it: (T, 3, H, W) float32."""

    source: str
    index: int  # clip number within the video
    frames: np.ndarray


@dataclass(frozen=True)
class ClipSet:
    """The decoded clips, split into calibration and held-out clips."""

    calibration: tuple[Clip, ...]
    holdout: tuple[Clip, ...]
    skipped: tuple[str, ...] = ()  # "path: reason" for videos that did not decode


def video_files(sources: Sequence[str | Path]) -> list[Path]:
    """Expand ``sources`` (files, directories, CSV lists) into video files, in order, without duplicates."""
    if not sources:
        raise VideployError("no calibration videos given; pass video files, a directory of videos or a CSV list with --videos")
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise VideployError(f"directory {str(p)!r} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
            out.extend(found)
        elif p.suffix.lower() == ".csv" and p.is_file():
            out.extend(_csv_videos(p))
        elif p.is_file():
            out.append(p)
        else:
            raise VideployError(f"calibration video {str(p)!r} does not exist; pass video files, directories or a CSV list")
    seen: set[Path] = set()
    unique = []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _csv_videos(path: Path) -> list[Path]:
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if not row or not row[0].strip():
                continue
            f = Path(row[0].strip())
            f = f if f.is_absolute() else path.parent / f
            if i == 0 and not f.is_file():
                continue  # a header
            if not f.is_file():
                raise VideployError(f"{str(path)!r} line {i + 1} names {row[0]!r}, which is not a file; paths are relative to the CSV's folder")
            rows.append(f)
    if not rows:
        raise VideployError(f"CSV {str(path)!r} lists no videos (first column: video paths)")
    return rows


def data_key(files: Sequence[Path], preprocessing: Preprocessing, clips_per_video: int, max_clips: int, holdout_every: int) -> str:
    """A hash of the data a clip set is decoded from: file contents and every choice that shapes the clips."""
    h = hashlib.sha256()
    h.update(repr((preprocessing, clips_per_video, max_clips, holdout_every)).encode())
    for f in files:
        h.update(file_digest(f).encode())
    return h.hexdigest()


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def iter_clips(files: Sequence[Path], preprocessing: Preprocessing, clips_per_video: int, progress: bool = False) -> Iterator[Clip | str]:
    """Each video's clips in order; a video that fails to decode yields ``"path: reason"`` instead."""
    from tqdm import tqdm

    from videploy.runtime.video import load_video

    for f in tqdm(files, desc="decoding calibration videos", unit="video", disable=not progress):
        try:
            vi = load_video(f, preprocessing, num_clips=clips_per_video)
        except VideployError as exc:
            log.warning("skipping calibration video %s: %s", f, exc)
            yield f"{f}: {exc}"
            continue
        for i, view in enumerate(vi.views):
            yield Clip(str(f), i, np.ascontiguousarray(view))


def decode_clips(
    files: Sequence[Path],
    preprocessing: Preprocessing,
    clips_per_video: int = 4,
    max_clips: int = 64,
    holdout_every: int = 4,
    progress: bool = False,
) -> ClipSet:
    """Decode up to ``max_clips`` clips and hold out every ``holdout_every``-th (0: none held out)."""
    if clips_per_video < 1 or max_clips < 1:
        raise VideployError(f"clips per video ({clips_per_video}) and the clip cap ({max_clips}) must be >= 1")
    if holdout_every == 1 or holdout_every < 0:
        raise VideployError(f"--holdout-every must be 0 (no held-out clips) or >= 2, got {holdout_every}")
    calib: list[Clip] = []
    hold: list[Clip] = []
    skipped: list[str] = []
    n = 0
    for item in iter_clips(files, preprocessing, clips_per_video, progress):
        if isinstance(item, str):
            skipped.append(item)
            continue
        n += 1
        (hold if holdout_every and n % holdout_every == 0 else calib).append(item)
        if n >= max_clips:
            break
    if not calib:
        raise VideployError(
            f"no calibration clips: none of the {len(files)} video(s) decoded" + (f" ({skipped[0]})" if skipped else "")
            + "; pass other videos with --videos"
        )
    return ClipSet(tuple(calib), tuple(hold), tuple(skipped))
