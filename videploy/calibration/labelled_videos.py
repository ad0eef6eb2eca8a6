"""Labelled calibration videos: a ``path,label`` CSV or a folder with one sub-folder per class.

Labels are class indices or class names (the bundle's label file, or ``--labels``). A CSV's relative
paths are relative to the CSV; an optional first row ``path,label`` is a header. The fit / held-out
split is a seeded permutation, so the same videos and seed always give the same split.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from videploy.errors import VideployError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"})


@dataclass(frozen=True)
class LabelledVideo:
    path: str
    label: int


def read_labelled_videos(source: str | Path, num_classes: int, labels: Sequence[str] | None = None) -> list[LabelledVideo]:
    """The videos of a ``path,label`` CSV file or of a folder per class, with class indices."""
    src = Path(source)
    if src.is_dir():
        out = _from_folders(src, num_classes, labels)
    elif src.is_file():
        out = _from_csv(src, num_classes, labels)
    else:
        raise VideployError(f"--videos {str(source)!r} does not exist; pass a CSV of path,label rows or a folder with one sub-folder per class")
    if not out:
        raise VideployError(f"--videos {str(source)!r} lists no videos")
    return out


def _label_index(text: str, where: str, num_classes: int, labels: Sequence[str] | None) -> int:
    t = text.strip()
    if labels is not None and t in labels:
        return list(labels).index(t)
    try:
        i = int(t)
    except ValueError:
        hint = "a class name of the bundle's labels" if labels is not None else "a class index (the bundle has no class names; pass --labels FILE to use names)"
        raise VideployError(f"{where}: label {t!r} is neither a class index in [0, {num_classes}) nor {hint}") from None
    if not 0 <= i < num_classes:
        raise VideployError(f"{where}: class index {i} is outside [0, {num_classes}) for this model")
    return i


def _from_csv(path: Path, num_classes: int, labels: Sequence[str] | None) -> list[LabelledVideo]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    except UnicodeDecodeError:
        raise VideployError(f"--videos {str(path)!r} is not a UTF-8 text CSV of path,label rows") from None
    if rows and [c.strip().lower() for c in rows[0]] == ["path", "label"]:
        rows = rows[1:]
    out = []
    for n, r in enumerate(rows, 1):
        where = f"{path.name} row {n}"
        if len(r) != 2:
            raise VideployError(f"{where}: expected 2 columns path,label, got {len(r)} ({','.join(r)!r})")
        p = Path(r[0].strip())
        out.append(LabelledVideo(str(p if p.is_absolute() else path.parent / p), _label_index(r[1], where, num_classes, labels)))
    return out


def _from_folders(root: Path, num_classes: int, labels: Sequence[str] | None) -> list[LabelledVideo]:
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = _label_index(d.name, f"folder {str(d)!r}", num_classes, labels)
        out += [LabelledVideo(str(f), label) for f in sorted(d.iterdir()) if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES]
    return out


def split_indices(count: int, fit_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(count)`` into (fit, held-out) positions, each sorted, neither empty."""
    if not 0 < fit_fraction < 1:
        raise VideployError(f"--fit-fraction must be between 0 and 1 (exclusive), got {fit_fraction}")
    if count < 2:
        raise VideployError(f"fitting and measuring thresholds needs at least 2 videos that decode, got {count}")
    n_fit = min(max(round(count * fit_fraction), 1), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[:n_fit]), np.sort(order[n_fit:])
