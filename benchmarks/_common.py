"""Shared by the benchmark scripts: model configurations, export into a temporary directory, headers.

Not a module of the package: the scripts put this directory on ``sys.path`` themselves
(``python benchmarks/<script>.py`` does that).
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from videploy.bench.machine import describe, machine_info

# Small configurations (official keyword names) that export and run in seconds on 2 CPU cores.
# They keep each family's structure (stages, blocks, the three AdaFocusV3 graphs), not its width.
SMALL: dict[str, tuple[str, dict[str, Any]]] = {
    "video_focalnet": ("video_focalnet_tiny", dict(img_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_frames=4, num_classes=7)),
    "stam": ("stam_8", dict(img_size=32, embed_dim=32, depth=1, num_heads=2, num_classes=7, aggregate={"clip_length": 8, "embed_dim": 32, "n_layers": 1})),
    # AdaFocusV3 needs 224x224 frames (7x7 glance map); fewer segments and steps, full-width networks
    "adafocusv3": ("adafocusv3_mbv2_r50", dict(num_segments=8, num_glance_segments=4, num_focus_segments=3, num_classes=7, patch_size=64)),
}
# --full-size: the smallest zoo entry of each family, at its published size.
FULL: dict[str, str] = {"video_focalnet": "video_focalnet_tiny", "stam": "stam_8", "adafocusv3": "adafocusv3_mbv2_r50"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def export(family: str, out: Path, full_size: bool, batch: str) -> Path:
    """Export ``family`` (small or full-size, random weights) to ``out``; verification at batch 1 only, for speed."""
    from videploy.export.api import export_bundle

    name, overrides = (FULL[family], None) if full_size else SMALL[family]
    t0 = time.perf_counter()
    log(f"exporting {name} ({'full size' if full_size else 'small config'}) to {out}")
    export_bundle(name, out, overrides=overrides, batch=batch, verify_batch_sizes=(1,))
    log(f"exported {name} in {time.perf_counter() - t0:.0f} s")
    return out


def header(title: str) -> list[str]:
    info = machine_info()
    return [
        f"## {title}",
        "",
        f"- date: {_dt.datetime.now().isoformat(timespec='minutes')}",
        f"- machine: {describe(info)}",
        f"- command: {' '.join(shlex.quote(a) for a in ['python', *sys.argv])}",
        "",
    ]


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(fmt(r) for r in rows)]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"
