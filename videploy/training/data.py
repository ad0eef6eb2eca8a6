"""Training data: videos decoded once through the runtime's own reader, then kept as uint8 frames.

Each video of a ``path,label`` CSV goes through :func:`videploy.runtime.video.load_video` with the
model's own :class:`~videploy.bundle.manifest.Preprocessing` (its frame sampling, short-side
resize and centre crop), so training sees exactly the frames a deployed bundle sees. What is kept
is the resized, cropped uint8 RGB frames (before normalisation, 4x smaller than float32), cached
as one ``.npy`` per CSV and preprocessing so later runs and epochs do not decode again.
:func:`normalize` then applies the manifest's scale / mean / std in the runtime's operation order.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from videploy import jsonsafe
from videploy.bundle.manifest import Preprocessing
from videploy.datasets.actions import read_split
from videploy.errors import VideployError
from videploy.runtime.video import load_video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSet:
    """Decoded videos: ``frames`` (N, T, H, W, 3) uint8 RGB, ``labels`` (N,) int64, and where each
    came from (``paths``) with the source frame index of every sampled frame (``frame_indices``)."""

    frames: np.ndarray
    labels: np.ndarray
    paths: tuple[str, ...]
    frame_indices: np.ndarray  # (N, T)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int) -> "VideoSet":
        return VideoSet(self.frames[:n], self.labels[:n], self.paths[:n], self.frame_indices[:n])


def _cache_key(csv_path: Path, pre: Preprocessing) -> str:
    h = hashlib.sha256()
    # the CSV's place too: two datasets can list the same relative names for different videos
    h.update(str(csv_path.resolve()).encode() + b"\0")
    h.update(csv_path.read_bytes())
    h.update(jsonsafe.dumps(asdict(pre), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def load_videos(csv_path: str | Path, preprocessing: Preprocessing, cache_dir: str | Path | None = None, progress: bool = True) -> VideoSet:
    """Decode every video of ``csv_path`` with ``preprocessing`` (one clip, one centre crop).

    With ``cache_dir`` the decoded frames are stored there (keyed by the CSV's bytes and the
    preprocessing) and reused. Videos listed with labels but failing to decode raise a
    :class:`VideployError` naming the video.
    """
    csv_path = Path(csv_path)
    rows = read_split(csv_path)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{csv_path.stem}-{_cache_key(csv_path, preprocessing)}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return VideoSet(z["frames"], z["labels"], tuple(str(p) for p in z["paths"]), z["frame_indices"])
    h, w = preprocessing.crop_size
    n, t = len(rows), preprocessing.num_frames
    frames = np.empty((n, t, h, w, 3), dtype=np.uint8)
    indices = np.empty((n, t), dtype=np.int64)
    labels = np.array([label for _, label in rows], dtype=np.int64)
    for i, (path, _) in enumerate(tqdm(rows, desc=f"decoding {csv_path.name}", unit="video", disable=not progress, leave=False)):
        video = load_video(path, preprocessing)
        if video.display_frames is None:  # pragma: no cover - load_video always fills it
            raise VideployError(f"decoding {path} gave no frames")
        frames[i] = video.display_frames
        indices[i] = video.frame_indices[0]
    out = VideoSet(frames, labels, tuple(str(p) for p, _ in rows), indices)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, frames=frames, labels=labels, paths=np.array(out.paths), frame_indices=indices)
        tmp.replace(cache)
    return out


def check_labels(videos: VideoSet, num_classes: int, what: str) -> None:
    bad = videos.labels[(videos.labels < 0) | (videos.labels >= num_classes)]
    if bad.size:
        raise VideployError(f"{what}: label {int(bad[0])} is outside 0..{num_classes - 1}; the model has {num_classes} classes (set num_classes)")


def normalize(frames: np.ndarray | torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) RGB -> the model input (B, T, 3, H, W) float32, as the runtime computes it."""
    x = torch.as_tensor(frames)
    if preprocessing.channel_order == "BGR":
        x = x.flip(-1)
    # The same operations in the same order, in place on one buffer: a third of a training step
    # went into temporaries here.
    out = torch.empty((*x.shape[:2], x.shape[4], *x.shape[2:4]), dtype=torch.float32)
    out.copy_(x.permute(0, 1, 4, 2, 3))
    shape = (1, 1, 3, 1, 1)
    out.mul_(torch.tensor(preprocessing.scale, dtype=torch.float32))
    out.sub_(torch.tensor(preprocessing.mean, dtype=torch.float32).view(shape))
    out.div_(torch.tensor(preprocessing.std, dtype=torch.float32).view(shape))
    return out


def symmetric_augment(frames: np.ndarray, labels: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random symmetry of the square per video of uint8 (B, T, H, W, 3) square frames, with the
    generated task's labels mapped along (:func:`videploy.datasets.actions.symmetry_labels`)."""
    from videploy.datasets.actions import SYMMETRIES, symmetry_labels

    out, new = np.empty_like(frames), labels.copy()
    choice = torch.randint(len(SYMMETRIES), (len(frames),), generator=generator).tolist()
    for i, k in enumerate(choice):
        transpose, flip_y, flip_x = SYMMETRIES[k]
        f = frames[i].transpose(0, 2, 1, 3) if transpose else frames[i]
        out[i] = f[:, ::-1 if flip_y else 1, ::-1 if flip_x else 1]
        new[i] = symmetry_labels(transpose, flip_y, flip_x)[labels[i]]
    return out, new


def batch_tensors(videos: VideoSet, rows: torch.Tensor, preprocessing: Preprocessing, augment: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised frames and labels of ``rows``; with a generator, symmetry-augmented."""
    frames, labels = videos.frames[rows.numpy()], videos.labels[rows.numpy()]
    if augment is not None:
        frames, labels = symmetric_augment(frames, labels, augment)
    return normalize(frames, preprocessing), torch.as_tensor(labels)


def batches(n: int, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False) -> list[torch.Tensor]:
    """Index batches over ``n`` items: shuffled with ``generator`` (deterministic), in order without."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    out = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and out and len(out[-1]) < batch_size and len(out) > 1:
        out = out[:-1]
    return out
