"""Accuracy against GFLOPs of the dynamic evaluation, written as JSON, CSV and a PNG plot.

The plot is the paper's comparison (AdaFocusV3 Fig. 6): early exit by the criterion, random exits in
the same numbers per exit, and the fixed budgets glance only / all steps.
"""

from __future__ import annotations

import csv
from videploy import jsonsafe
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from videploy.calibration.dynamic_evaluation import DynamicPoint
from videploy.errors import VideployError
from videploy.optional import require

SUFFIXES = (".json", ".csv", ".png")


@dataclass(frozen=True)
class Curve:
    model: str
    criterion: str
    num_fit: int  # videos the thresholds were fitted on
    num_heldout: int  # videos they were measured on
    points: tuple[DynamicPoint, ...]  # one per q, in q order
    fixed: tuple[tuple[float, float], ...]  # (GFLOPs, accuracy) of every video at exit t
    marks: tuple[tuple[str, float, float], ...] = ()  # other measured runs to show: (label, GFLOPs, accuracy)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "criterion": self.criterion,
            "fit_videos": self.num_fit,
            "heldout_videos": self.num_heldout,
            "glance_only": {"gflops": self.fixed[0][0], "accuracy": self.fixed[0][1]},
            "all_steps": {"gflops": self.fixed[-1][0], "accuracy": self.fixed[-1][1]},
            "fixed_exits": [{"exit": t, "gflops": g, "accuracy": a} for t, (g, a) in enumerate(self.fixed)],
            "dynamic": [p.to_dict() for p in self.points],
            "marks": [{"name": n, "gflops": g, "accuracy": a} for n, g, a in self.marks],
        }


def curve_paths(out: str | Path) -> dict[str, Path]:
    """``OUT`` -> OUT.json / OUT.csv / OUT.png (a given .json / .csv / .png suffix is dropped)."""
    base = Path(out)
    if base.suffix.lower() in SUFFIXES:
        base = base.with_suffix("")
    if base.name in ("", ".", ".."):
        raise VideployError(f"--curve {str(out)!r} needs a file name, e.g. --curve results/exit_curve")
    if base.parent.exists() and not base.parent.is_dir():
        raise VideployError(f"--curve {str(out)!r}: {str(base.parent)!r} is not a directory")
    return {s[1:]: base.with_name(base.name + s) for s in SUFFIXES}


def write_curve(curve: Curve, out: str | Path) -> dict[str, Path]:
    """Write OUT.json, OUT.csv and OUT.png; return their paths by kind."""
    paths = curve_paths(out)
    plt = _pyplot()  # before writing anything: a missing matplotlib leaves no partial output
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(jsonsafe.dumps(curve.to_dict(), indent=2) + "\n")
    with paths["csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "q", "gflops", "accuracy", "random_accuracy", "exit_counts"])
        for t, (g, a) in enumerate(curve.fixed):
            w.writerow([f"exit {t}", "", f"{g:.6g}", f"{a:.6g}", "", ""])
        for p in curve.points:
            w.writerow(["dynamic", "" if p.q is None else f"{p.q:g}", f"{p.gflops:.6g}", f"{p.accuracy:.6g}", f"{p.random_accuracy:.6g}", " ".join(map(str, p.exit_counts))])
    _plot(plt, curve, paths["png"])
    return paths


def _pyplot():
    mpl = require("matplotlib", "the accuracy / GFLOPs plot of calibrate-exits --curve")
    mpl.use("Agg")  # files only; never open a window
    return require("matplotlib.pyplot", "the accuracy / GFLOPs plot of calibrate-exits --curve")


def _plot(plt, curve: Curve, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    try:
        pts = sorted(curve.points, key=lambda p: p.gflops)
        pct = 100.0
        ax.plot([p.gflops for p in pts], [pct * p.accuracy for p in pts], "o-", label=f"early exit ({curve.criterion})")
        ax.plot([p.gflops for p in pts], [pct * p.random_accuracy for p in pts], "s--", label="random exit (same exit proportions)")
        fixed: Sequence[tuple[float, float]] = curve.fixed
        ax.plot([g for g, _ in fixed], [pct * a for _, a in fixed], ":", color="gray", label="fixed exit t (every video)")
        ax.plot(*_scaled(fixed[0], pct), "v", color="black", label="glance only")
        ax.plot(*_scaled(fixed[-1], pct), "^", color="black", label="all steps")
        for (name, g, a), marker in zip(curve.marks, "DPX*hp<>8" * 4):
            ax.plot([g], [pct * a], marker, markersize=7, linestyle="none", label=name)
        ax.set_xlabel("average GFLOPs per video (held-out)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{curve.model}: fitted on {curve.num_fit}, measured on {curve.num_heldout} videos")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def _scaled(point: tuple[float, float], pct: float) -> tuple[list[float], list[float]]:
    return [point[0]], [pct * point[1]]
