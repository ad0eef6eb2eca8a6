"""Generated action videos: a small, honest recognition task where *where* and *when* both matter.

Each clip shows a cluttered scene (a smooth, nearly grey random texture and several drifting grey
discs and squares) with one small, saturated triangle -- the *actor* -- placed anywhere in the
frame. The actor stands still except during an *action window* that covers only part of the clip,
where it does one of :data:`CLASSES`: moves left / right / up / down, grows, shrinks, rotates
clockwise / counter-clockwise, blinks (flashes white), or nothing at all (``still``).

Motion is rendered as a fading trail of the actor's previous poses in a lighter tint (as a camera's
motion blur would show it), so a single frame of the right place and time tells the class; the
trail is a few pixels wide, so a low-resolution glance at the whole frame reads it poorly, and
frames outside the action window look like ``still``. A model therefore has to find the actor
(spatial focus) in the right frames (temporal focus). The task has no preferred orientation:
:func:`symmetry_labels` says how labels map under flips, which training uses as augmentation.

Splits are deterministic by seed and written as real video files with OpenCV:

``OUT/<split>/<class>_<index>.mp4``, ``OUT/<split>.csv`` (``path,label`` with paths relative to
the CSV's folder), ``OUT/<split>_boxes.json`` (per video: the actor's box ``[x1, y1, x2, y2]`` in
source pixels for every frame, and the action window ``[start, end)``), and ``OUT/labels.txt``
(one class name per line, line i = label i).

Torch-free: numpy and OpenCV only.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from videploy import jsonsafe
from videploy.errors import VideployError

CLASSES: tuple[str, ...] = (
    "still",
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "grow",
    "shrink",
    "rotate_clockwise",
    "rotate_counterclockwise",
    "blink",
)

# Default split sizes (videos per split) and their seed offsets: each split has its own stream.
DEFAULT_SPLITS: dict[str, int] = {"train": 2000, "val": 300, "test": 300}
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}

# Ghost poses drawn behind the actor (oldest first): frames back and opacity.
_TRAIL: tuple[tuple[int, float], ...] = ((6, 0.25), (5, 0.3), (4, 0.35), (3, 0.4), (2, 0.5), (1, 0.6))


@dataclass(frozen=True)
class ActionVideoSpec:
    """How the clips look. Sizes are in source pixels."""

    size: int = 160  # frames are size x size
    num_frames: int = 32
    fps: int = 16
    actor_radius: tuple[float, float] = (12.0, 16.0)  # circumradius of the actor triangle
    num_distractors: tuple[int, int] = (4, 8)
    window: tuple[float, float] = (0.35, 0.55)  # action window length, as a fraction of the clip
    codec: str = "mp4v"  # OpenCV fourcc; mp4v (.mp4) reads back everywhere OpenCV reads video

    def __post_init__(self) -> None:
        if self.size < 48 or self.num_frames < 8:
            raise VideployError(f"ActionVideoSpec: size must be >= 48 and num_frames >= 8, got {self.size}, {self.num_frames}")


@dataclass(frozen=True)
class Clip:
    """One generated clip: frames (T, H, W, 3) uint8 RGB, its label and the actor's geometry."""

    frames: np.ndarray
    label: int
    boxes: np.ndarray  # (T, 4) float32 [x1, y1, x2, y2] of the actor in each frame
    window: tuple[int, int]  # the action's frames [start, end)


def class_names() -> tuple[str, ...]:
    return CLASSES


# The symmetries of the square as (transpose, flip_y, flip_x), applied to frames in that order.
SYMMETRIES: tuple[tuple[bool, bool, bool], ...] = tuple((t, fy, fx) for t in (False, True) for fy in (False, True) for fx in (False, True))


def symmetry_labels(transpose: bool, flip_y: bool, flip_x: bool) -> np.ndarray:
    """Where each label goes when a clip is transposed / flipped: ``new_label = table[label]``.

    The task has no preferred orientation, so these are free, exact training augmentations: a
    flipped ``move_left`` clip *is* a ``move_right`` clip, and every reflection turns clockwise
    into counter-clockwise.
    """
    index = {name: i for i, name in enumerate(CLASSES)}
    moves = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
    by_vector = {v: k for k, v in moves.items()}
    table = np.arange(len(CLASSES))
    for name, (dx, dy) in moves.items():
        if transpose:
            dx, dy = dy, dx
        if flip_y:
            dy = -dy
        if flip_x:
            dx = -dx
        table[index[name]] = index[by_vector[(dx, dy)]]
    if (transpose + flip_y + flip_x) % 2:
        cw, ccw = index["rotate_clockwise"], index["rotate_counterclockwise"]
        table[cw], table[ccw] = ccw, cw
    return table


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    # Smooth clutter: a coarse random colour grid upsampled, plus fine noise; muted so the actor's
    # saturation stands out only locally.
    coarse = rng.uniform(60, 190, size=(6, 6, 3)).astype(np.float32)
    coarse = 0.15 * coarse + 0.85 * coarse.mean(axis=-1, keepdims=True)  # nearly grey
    bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    bg += rng.normal(0, 6, size=(size, size, 3)).astype(np.float32)
    return np.clip(bg, 0, 255)


def _triangle(cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    # An elongated isosceles triangle (its tip at ``angle``): asymmetric, so rotation shows.
    pts = []
    for k, r in ((0.0, 1.0), (2.5, 0.75), (-2.5, 0.75)):
        a = angle + k
        pts.append((cx + r * radius * math.cos(a), cy - r * radius * math.sin(a)))
    return np.array(pts, dtype=np.float32)


def _draw_polygon(img: np.ndarray, pts: np.ndarray, colour: np.ndarray, alpha: float) -> None:
    # Blend inside the polygon's bounding box only (rendering speed); sub-pixel vertices (shift)
    # keep slow motion smooth.
    shift = 4
    h, w = img.shape[:2]
    x0, y0 = max(int(pts[:, 0].min()) - 2, 0), max(int(pts[:, 1].min()) - 2, 0)
    x1, y1 = min(int(pts[:, 0].max()) + 3, w), min(int(pts[:, 1].max()) + 3, h)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    local = (pts - np.array([x0, y0], np.float32)) * (1 << shift)
    cv2.fillPoly(mask, [np.round(local).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=shift)
    m = (mask.astype(np.float32) * (alpha / 255.0))[..., None]
    roi = img[y0:y1, x0:x1]
    roi *= 1.0 - m
    roi += m * colour


def _pose(label: str, t: int, window: tuple[int, int], start: tuple[float, float, float, float], speed: float) -> tuple[float, float, float, float]:
    """(cx, cy, radius, angle) of the actor at frame t."""
    cx, cy, r, a = start
    s0, s1 = window
    k = min(max(t - s0, 0), s1 - 1 - s0)  # progress through the window [s0, s1), frozen outside it
    if label == "move_left":
        cx -= speed * k
    elif label == "move_right":
        cx += speed * k
    elif label == "move_up":
        cy -= speed * k
    elif label == "move_down":
        cy += speed * k
    elif label == "grow":
        r *= 1.0 + 0.05 * k
    elif label == "shrink":
        r /= 1.0 + 0.05 * k
    elif label == "rotate_clockwise":
        a -= 0.3 * k
    elif label == "rotate_counterclockwise":
        a += 0.3 * k
    return cx, cy, r, a


def render_clip(label: int, seed: int, spec: ActionVideoSpec | None = None) -> Clip:
    """Render one clip of class ``label`` from ``seed`` (same seed, same pixels)."""
    spec = spec or ActionVideoSpec()
    if not 0 <= label < len(CLASSES):
        raise VideployError(f"label {label} is out of range: the task has {len(CLASSES)} classes (0..{len(CLASSES) - 1})")
    name = CLASSES[label]
    rng = np.random.default_rng(seed)
    n, size = spec.num_frames, spec.size
    length = int(round(n * rng.uniform(*spec.window)))
    s0 = int(rng.integers(1, n - length))
    window = (s0, s0 + length)
    radius = float(rng.uniform(*spec.actor_radius))
    speed = float(rng.uniform(2.0, 3.0))
    travel = speed * length
    # Keep the actor (and its whole path) inside the centre region every preprocessing keeps.
    margin = 0.1 * size + 1.5 * radius
    lo_x, hi_x, lo_y, hi_y = margin, size - margin, margin, size - margin
    if name == "move_left":
        lo_x += travel
    elif name == "move_right":
        hi_x -= travel
    elif name == "move_up":
        lo_y += travel
    elif name == "move_down":
        hi_y -= travel
    start = (float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y)), radius, float(rng.uniform(0, 2 * math.pi)))
    hue = int(rng.integers(0, 180))
    hsv = np.uint8([[[hue, 255, 255]]])
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    ghost = 0.5 * colour + 127.5

    bg = _background(rng, size)
    k = int(rng.integers(spec.num_distractors[0], spec.num_distractors[1] + 1))
    d_pos = rng.uniform(0, size, size=(k, 2))
    d_vel = rng.uniform(-2.0, 2.0, size=(k, 2))
    d_rad = rng.uniform(4.0, 10.0, size=k)
    d_col = rng.uniform(70, 200, size=(k, 1)) + rng.uniform(-10, 10, size=(k, 3))
    d_square = rng.random(k) < 0.5

    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    boxes = np.empty((n, 4), dtype=np.float32)
    for t in range(n):
        img = bg.copy()
        for j in range(k):
            # Distractors bounce off the borders (reflection keeps them on screen).
            p = d_pos[j] + d_vel[j] * t
            p = size - np.abs(size - np.mod(p, 2 * size))
            r = d_rad[j]
            if d_square[j]:
                pts = np.array([[p[0] - r, p[1] - r], [p[0] + r, p[1] - r], [p[0] + r, p[1] + r], [p[0] - r, p[1] + r]], np.float32)
            else:
                ang = np.linspace(0, 2 * math.pi, 16, endpoint=False)
                pts = np.stack([p[0] + r * np.cos(ang), p[1] + r * np.sin(ang)], axis=1).astype(np.float32)
            _draw_polygon(img, pts, np.clip(d_col[j], 0, 255), 1.0)
        pose = _pose(name, t, window, start, speed)
        body = _triangle(*pose)
        flash = name == "blink" and window[0] <= t < window[1] and (t - window[0]) % 4 < 2
        _draw_polygon(img, body, np.full(3, 255.0, np.float32) if flash else colour, 1.0)
        # Ghosts go over the body in a lighter tint: a growing actor's smaller past poses would
        # otherwise hide under it, and one frame could not tell growing from standing still.
        for back, alpha in _TRAIL:
            if t - back >= window[0] and t - back < window[1]:  # ghosts exist only while it acts
                _draw_polygon(img, _triangle(*_pose(name, t - back, window, start, speed)), ghost, alpha)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
        boxes[t] = (body[:, 0].min(), body[:, 1].min(), body[:, 0].max(), body[:, 1].max())
    return Clip(frames=frames, label=label, boxes=boxes, window=window)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_video(path: Path, frames: np.ndarray, fps: int, codec: str = "mp4v") -> None:
    """Write (T, H, W, 3) uint8 RGB frames with OpenCV (raises if the codec cannot be opened)."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), (w, h))
    if not writer.isOpened():
        raise VideployError(f"OpenCV cannot write {path} with codec {codec!r}; try codec 'MJPG' with a .avi name")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _split_items(split: str, count: int, seed: int) -> Iterator[tuple[int, int, int]]:
    # Balanced labels in a shuffled order; one seed per clip derived from (seed, split, index).
    stream = _SPLIT_STREAM.get(split, sum(map(ord, split)) + 3)
    rng = np.random.default_rng([seed, stream])
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    clip_seeds = rng.integers(0, 2**63 - 1, size=count)
    for i in range(count):
        yield i, int(labels[i]), int(clip_seeds[i])


def generate_split(out_dir: str | Path, split: str, count: int, seed: int = 0, spec: ActionVideoSpec | None = None, progress: bool = False) -> Path:
    """Write one split under ``out_dir``; returns the CSV path. ``progress``: a progress bar (stderr)."""
    from tqdm import tqdm

    spec = spec or ActionVideoSpec()
    if count < 1:
        raise VideployError(f"split {split!r}: the number of videos must be positive, got {count}")
    out = Path(out_dir)
    ext = ".avi" if spec.codec.upper() in ("MJPG", "FFV1", "XVID") else ".mp4"
    (out / split).mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, int]] = []
    meta: dict[str, dict] = {}
    for i, label, clip_seed in tqdm(_split_items(split, count, seed), total=count, desc=f"generating {split}", unit="clip", disable=not progress, leave=False):
        clip = render_clip(label, clip_seed, spec)
        rel = f"{split}/{CLASSES[label]}_{i:05d}{ext}"
        write_video(out / rel, clip.frames, spec.fps, spec.codec)
        rows.append((rel, label))
        meta[rel] = {"label": label, "window": list(clip.window), "frame_size": [spec.size, spec.size], "boxes": np.round(clip.boxes, 2).tolist()}
    csv_path = out / f"{split}.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    with open(out / f"{split}_boxes.json", "w") as f:
        f.write(jsonsafe.dumps({"spec": asdict(spec), "frame_size": [spec.size, spec.size], "videos": meta}))
    return csv_path


def write_labels(out_dir: str | Path) -> Path:
    path = Path(out_dir) / "labels.txt"
    path.write_text("".join(f"{c}\n" for c in CLASSES))
    return path


def generate(
    out_dir: str | Path,
    splits: dict[str, int] | None = None,
    seed: int = 0,
    spec: ActionVideoSpec | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Write every split (default :data:`DEFAULT_SPLITS`) and ``labels.txt``; returns split -> CSV path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_labels(out)
    return {name: generate_split(out, name, count, seed, spec, progress) for name, count in (splits or DEFAULT_SPLITS).items()}


def read_split(csv_path: str | Path) -> list[tuple[Path, int]]:
    """``path,label`` rows of a CSV (a header row is optional; relative paths are relative to the CSV)."""
    p = Path(csv_path)
    if not p.is_file():
        raise VideployError(f"no CSV at {p}; write one with 'videploy datasets' or give a 'path,label' file")
    rows: list[tuple[Path, int]] = []
    with open(p, newline="") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or (n == 1 and row[-1].strip().lower() == "label"):
                continue
            if len(row) < 2:
                raise VideployError(f"{p}:{n}: expected 'path,label', got {','.join(row)!r}")
            try:
                label = int(row[-1])
            except ValueError:
                raise VideployError(f"{p}:{n}: the label {row[-1]!r} is not an integer class index") from None
            path = Path(",".join(row[:-1]).strip())
            rows.append((path if path.is_absolute() else p.parent / path, label))
    if not rows:
        raise VideployError(f"{p} lists no videos")
    return rows


def read_boxes(json_path: str | Path) -> dict[str, dict]:
    """The sidecar of a split: relative video path -> {"label", "window", "boxes"}."""
    with open(json_path) as f:
        return json.load(f)["videos"]


def boxes_in_view(boxes: np.ndarray, frame_size: Sequence[int], resize_short: int, crop: int) -> np.ndarray:
    """Map source-pixel boxes (.., 4) to a centre-cropped view (short side resized to ``resize_short``,
    then a ``crop`` x ``crop`` centre crop): the coordinates a model input sees."""
    h, w = frame_size
    s = resize_short / min(h, w)
    oy = int(round((round(h * s) - crop) / 2.0))
    ox = int(round((round(w * s) - crop) / 2.0))
    b = np.asarray(boxes, dtype=np.float64) * s
    return b - np.array([ox, oy, ox, oy])


def actor_centres(info: dict, frames: Sequence[int] | np.ndarray, resize_short: int, crop: int) -> np.ndarray:
    """(n, 2) x, y of the actor's centre in source frames ``frames`` of one video (its sidecar
    entry ``info``), in the coordinates of the model's centre-cropped input."""
    b = boxes_in_view(np.asarray(info["boxes"])[np.asarray(frames, dtype=np.int64)], info["frame_size"], resize_short, crop)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)


def boxes_contain(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether each box ``[x1, y1, x2, y2]`` (n, 4) contains its point (n, 2)."""
    b, p = np.asarray(boxes, dtype=np.float64), np.asarray(points, dtype=np.float64)
    return (b[:, 0] <= p[:, 0]) & (p[:, 0] <= b[:, 2]) & (b[:, 1] <= p[:, 1]) & (p[:, 1] <= b[:, 3])
