"""Draw what AdaFocusV3 looked at: the sampled frames with each focus step's box and number.

``.png`` / ``.jpg``: one contact sheet (the sampled frames in a grid, a header with the prediction,
the exit taken and the GFLOPs spent). ``.mp4`` / ``.avi``: the sampled frames in order, two per
second, with the same drawing. OpenCV only, like the rest of the runtime.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from videploy.errors import VideployError

MIN_TILE = 192  # frames are upscaled to at least this many pixels so boxes and numbers are legible
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _colour(step: int) -> tuple[int, int, int]:
    hue = int((step * 47) % 180)
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def _tiles(prediction) -> list[np.ndarray]:
    """One BGR tile per sampled frame, boxes drawn."""
    frames = prediction.display_frames
    trace = prediction.adaptive
    if frames is None or trace is None:
        raise VideployError("--visualize draws AdaFocusV3's focus boxes; it needs an adaptive (AdaFocusV3) bundle")
    h, w = frames.shape[1:3]
    f = max(1.0, MIN_TILE / min(h, w))
    size = (int(round(w * f)), int(round(h * f)))
    sampled = prediction.frame_indices[0]
    tiles = []
    for s in range(frames.shape[0]):
        tile = cv2.resize(np.ascontiguousarray(frames[s][..., ::-1]), size, interpolation=cv2.INTER_LINEAR)
        cv2.putText(tile, f"#{int(sampled[s])}", (4, 16), _FONT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        for cube in trace.cubes:
            if s not in cube.sampled:
                continue
            x1, y1, x2, y2 = (int(round(v * f)) for v in cube.box)
            c = _colour(cube.step)
            cv2.rectangle(tile, (x1, y1), (x2, y2), c, 2)
            cv2.putText(tile, str(cube.step), (x1 + 4, max(14, y1 + 18)), _FONT, 0.6, c, 2, cv2.LINE_AA)
        tiles.append(tile)
    return tiles


def _header(prediction, width: int) -> np.ndarray:
    t = prediction.adaptive
    top = prediction.top[0]
    lines = [
        f"{prediction.model_name}: {top.name} ({top.probability:.1%})",
        f"exit {t.exit_step}/{t.num_steps}  {prediction.gflops:.2f} of {t.full_gflops:.2f} GFLOPs  boxes = focus steps",
    ]
    if prediction.random_weights:
        lines.append("RANDOM WEIGHTS: predictions mean nothing")
    bar = np.full((18 * len(lines) + 8, width, 3), 32, dtype=np.uint8)
    for i, text in enumerate(lines):
        colour = (80, 80, 255) if text.startswith("RANDOM") else (255, 255, 255)
        cv2.putText(bar, text, (6, 18 * (i + 1)), _FONT, 0.45, colour, 1, cv2.LINE_AA)
    return bar


def contact_sheet(prediction) -> np.ndarray:
    """The whole picture as one BGR image."""
    tiles = _tiles(prediction)
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    th, tw = tiles[0].shape[:2]
    sheet = np.zeros((rows * th, cols * tw, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile
    return np.concatenate([_header(prediction, sheet.shape[1]), sheet], axis=0)


SUFFIXES = (".png", ".jpg", ".jpeg", ".mp4", ".avi")


def check_output_path(path: str | Path) -> Path:
    """The checks :func:`write_visualization` needs, callable before any work is done."""
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        # OpenCV's writers crash (segmentation fault) on a path that is not valid UTF-8
        raise VideployError(f"cannot write {str(path)!r}: the path is not valid UTF-8, which OpenCV cannot write to; choose another name") from None
    if path.suffix.lower() not in SUFFIXES:
        raise VideployError(f"visualizations are written as .png, .jpg, .mp4 or .avi, not {path.name!r}")
    # a missing directory is created when the picture is written; an existing non-directory is an error
    for parent in (path.parent, *path.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise VideployError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a directory")
            break
    return path


def write_visualization(prediction, path: str | Path) -> Path:
    """Write a contact sheet (``.png``, ``.jpg``) or a clip (``.mp4``, ``.avi``) of the focus steps."""
    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VideployError(f"cannot create the directory for {str(path)!r}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        if not cv2.imwrite(str(path), contact_sheet(prediction)):
            raise VideployError(f"OpenCV could not write {str(path)!r}")
        return path
    if suffix in (".mp4", ".avi"):
        tiles = _tiles(prediction)
        frames = [np.concatenate([_header(prediction, t.shape[1]), t], axis=0) for t in tiles]
        h, w = frames[0].shape[:2]
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if suffix == ".mp4" else "MJPG"))
        writer = cv2.VideoWriter(str(path), fourcc, 2.0, (w, h))
        if not writer.isOpened():
            raise VideployError(f"OpenCV cannot write video {str(path)!r}")
        try:
            for fr in frames:
                writer.write(fr)
        finally:
            writer.release()
    return path
