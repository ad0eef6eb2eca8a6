"""What to predict: the list of videos from a directory tree, a glob or a CSV, and what is left to do.

Every video is named by an absolute path (``os.path.abspath``: normalised, symlinks kept), which
is the key the output uses to tell done videos from pending ones, so the same INPUT given as a
relative or an absolute path resumes the same work. On a cluster every worker must see these
paths (a shared file system), as it must see the bundle.

* a **directory**: every file below it whose suffix is a video container (:data:`VIDEO_SUFFIXES`),
  recursively, skipping hidden files and directories (``.name``);
* a **glob** (``clips/**/*.mp4``; ``**`` recurses): every regular file it matches, any suffix;
* a **CSV** (``.csv``): ``path[,label]`` per row, an optional header row naming the columns
  ``path`` and ``label``; relative paths are relative to the CSV's own directory (so a dataset
  directory with its list file can be moved); the label is kept as text in the output;
* a single video file.

A path listed twice is kept once (the first row): the output never holds a video twice.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable

from videploy.errors import VideployError

log = logging.getLogger(__name__)

# Containers FFmpeg reads that datasets ship videos in (lower case, with the dot).
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv", ".3gp", ".ogv"}
)
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class VideoItem:
    """One video to predict: its absolute path and, from a CSV, its ground-truth label (text)."""

    path: str
    label: str | None = None


def list_videos(source: str | os.PathLike) -> list[VideoItem]:
    """The videos named by ``source`` (directory, glob, CSV or one video), each path once, in a stable order."""
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        items = _from_directory(path)
        where = f"directory {text!r} (searched recursively for {', '.join(sorted(VIDEO_SUFFIXES))})"
    elif path.is_file() and path.suffix.lower() == ".csv":
        items = _from_csv(path)
        where = f"CSV {text!r}"
    elif path.is_file():
        items = [VideoItem(os.path.abspath(path))]
        where = text
    elif any(c in text for c in _GLOB_CHARS):
        items = [VideoItem(os.path.abspath(p)) for p in sorted(glob.glob(text, recursive=True)) if os.path.isfile(p)]
        where = f"glob {text!r}"
    else:
        raise VideployError(f"input {text!r} does not exist; pass a directory of videos, a glob such as 'clips/**/*.mp4' (quoted), or a CSV of path[,label]")
    items = _unique(items)
    if not items:
        raise VideployError(f"no videos found in {where}; check the path (a glob must be quoted so the shell does not expand it)")
    return items


def pending(items: Iterable[VideoItem], done: Collection[str]) -> list[VideoItem]:
    """``items`` whose path is not in ``done`` (the paths an earlier run already wrote)."""
    return [it for it in items if it.path not in done]


def _from_directory(root: Path) -> list[VideoItem]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES:
                out.append(VideoItem(os.path.abspath(os.path.join(dirpath, name))))
    return out


def _from_csv(path: Path) -> list[VideoItem]:
    base = path.parent
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError as exc:
        raise VideployError(f"CSV {str(path)!r} is not UTF-8 text ({exc}); save it as UTF-8") from None
    except OSError as exc:
        raise VideployError(f"cannot read CSV {str(path)!r}: {exc.strerror or exc}") from None
    if not rows:
        return []
    col_path, col_label = 0, 1
    head = [c.strip().lower() for c in rows[0]]
    if "path" in head:
        col_path = head.index("path")
        col_label = head.index("label") if "label" in head else -1
        rows = rows[1:]
    out = []
    for line, row in enumerate(rows, start=2 if "path" in head else 1):
        p = row[col_path].strip() if col_path < len(row) else ""
        if not p:
            raise VideployError(f"CSV {str(path)!r} row {line} has no path; each row is path[,label]")
        label = row[col_label].strip() if 0 <= col_label < len(row) and row[col_label].strip() else None
        out.append(VideoItem(os.path.abspath(os.path.join(base, os.path.expanduser(p))), label))
    return out


def _unique(items: list[VideoItem]) -> list[VideoItem]:
    seen: set[str] = set()
    out = []
    for it in items:
        if it.path in seen:
            log.warning("%s is listed more than once; it is predicted once", it.path)
            continue
        seen.add(it.path)
        out.append(it)
    return out
