"""``videploy calibrate-exits``: fit AdaFocusV3 exit thresholds on labelled videos (the official dynamic evaluation)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Fit the exit thresholds of an AdaFocusV3 bundle on labelled videos and measure them on
held-out ones, as the official Uni-AdaFocus dynamic evaluation does.

Every video runs once through all exits (no early exit) and every exit's logits are kept.
The videos are split (seeded) into a fitting part and a held-out part. For each ratio
q = 1/20 ... 19/20 the share of videos leaving at exit t is set to p_t ~ q^t; on the fitting
part threshold eta_t is placed exactly at the criterion value of the floor(N p_t)-th most
confident video still running, and the last exit takes everyone left. The thresholds are
then applied to the held-out part: accuracy, average GFLOPs and how many videos left at
each exit are printed per q.

--criterion entropy (default, the paper's): a video stops when the entropy of its softmax
is <= eta_t. --criterion confidence (the official test's other criterion): when its largest
logit is >= eta_t. The runtime uses the criterion stored with the thresholds.

--budget GFLOPS searches a wider set of exit distributions (also q > 1 and single exits),
keeps the most accurate thresholds whose held-out average cost fits the budget and WRITES
them (with the criterion) into the bundle's manifest, atomically; 'videploy predict' then
uses them by default. --curve OUT writes accuracy vs GFLOPs as OUT.json, OUT.csv and
OUT.png, with the glance-only and all-steps points and random exits in the same numbers per
exit (the paper's Fig. 6 comparison; the plot needs matplotlib: pip install 'videploy[plot]').

Labels: a CSV of path,label rows (relative paths are relative to the CSV; labels are class
indices or class names from the bundle's labels or --labels), or a folder with one
sub-folder per class (named by class name or index). Videos that cannot be decoded are
reported and left out.
"""

EPILOG = """\
examples:
  videploy calibrate-exits ada/ --videos val.csv                      the table, nothing written
  videploy calibrate-exits ada/ --videos val.csv --budget 8.5         store thresholds for 8.5 GFLOPs
  videploy calibrate-exits ada/ --videos clips_by_class/ --curve out/exits
  videploy calibrate-exits ada/ --videos val.csv --criterion confidence --fit-fraction 0.5 --seed 1

exit status: 0 done; 2 an error (bad bundle, videos or arguments), or some videos could not be
decoded (they are listed; the rest were used and the results written).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate-exits",
        help="fit AdaFocusV3 exit thresholds on labelled videos (budget, accuracy/GFLOPs curve)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="AdaFocusV3 bundle directory written by 'videploy export'")
    p.add_argument("--videos", required=True, metavar="CSV|DIR", help="labelled videos: a path,label CSV or a folder with one sub-folder per class")
    p.add_argument("--budget", type=float, metavar="GFLOPS", help="write the most accurate thresholds within this average GFLOPs per video into the bundle")
    p.add_argument("--curve", metavar="OUT", help="write accuracy vs GFLOPs to OUT.json, OUT.csv and OUT.png")
    p.add_argument("--criterion", default="entropy", choices=["entropy", "confidence"], help="exit criterion (default entropy: stop when entropy <= eta; confidence: when max logit >= eta)")
    p.add_argument("--fit-fraction", type=float, default=0.5, metavar="F", help="share of the videos the thresholds are fitted on; the rest measures them (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fit / held-out split (default 0)")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line or id,name CSV (default: the bundle's, if any)")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt"], help="backend running the graphs (default onnxruntime)")
    p.add_argument("--device", metavar="DEV", help="cpu (default), cuda, or tensorrt (onnxruntime's TensorRT provider); the tensorrt backend always uses cuda")
    p.add_argument("--precision", metavar="P", help="graph / engine variant: fp32, fp16, int8 (default: the exported graph); fit with the precision you deploy")
    p.add_argument("--batch-size", type=int, metavar="N", help="videos per backend call (default: the bundle's maximum batch)")
    p.add_argument("--threads", type=int, metavar="N", help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import math

    from rich.console import Console

    from videploy.cli.options import stdout_console

    from videploy.calibration.dynamic_evaluation import budget_search, dynamic_evaluation, fixed_exit_points
    from videploy.calibration.exit_curve import Curve, curve_paths, write_curve
    from videploy.calibration.exit_logits import collect_exit_logits
    from videploy.calibration.fit_on_videos import store_thresholds
    from videploy.calibration.labelled_videos import read_labelled_videos, split_indices
    from videploy.errors import VideployError
    from videploy.runtime import load
    from videploy.runtime.video import quiet_decoder_logs

    if not getattr(args, "verbose", False):
        quiet_decoder_logs()
    out = stdout_console()
    err = Console(stderr=True, highlight=False)
    if args.budget is not None and not math.isfinite(args.budget):
        raise VideployError(f"--budget must be a number of GFLOPs, got {args.budget}")
    if args.curve:
        curve_paths(args.curve)  # a bad path fails before the long run
    if not 0 < args.fit_fraction < 1:
        raise VideployError(f"--fit-fraction must be between 0 and 1 (exclusive), got {args.fit_fraction}")

    options: dict[str, Any] = {}
    if args.threads is not None:
        if args.backend != "onnxruntime":
            raise VideployError("--threads applies to the onnxruntime backend")
        options["threads"] = args.threads
    device = args.device or ("cuda" if args.backend == "tensorrt" else "cpu")
    rec = load(args.bundle, backend=args.backend, device=device, labels=args.labels, precision=args.precision, **options)
    try:
        m = rec.manifest
        ee = m.early_exit
        if ee is None:
            raise VideployError(f"calibrate-exits is for adaptive (AdaFocusV3) bundles; {m.model_name!r} is a {m.family} bundle")
        cost = ee.exit_gflops
        if args.budget is not None and not cost[0] <= args.budget:
            raise VideployError(f"--budget {args.budget:g} is below the cheapest exit (the glance, {cost[0]:.4g} GFLOPs); choose between {cost[0]:.4g} and {cost[-1]:.4g}")
        videos = read_labelled_videos(args.videos, m.num_classes, rec.labels)
        err.print(f"running {len(videos)} videos through all {ee.num_steps + 1} exits of {m.model_name} ({args.backend}, {device}) ...")
        collected = collect_exit_logits(rec, (v.path for v in videos), batch_size=args.batch_size)
    finally:
        rec.close()
    for i, reason in collected.failures:
        err.print(f"videploy calibrate-exits: skipped {videos[i].path}: {reason}", markup=False)
    labels = [videos[i].label for i in collected.kept]
    fit, held = split_indices(len(labels), args.fit_fraction, args.seed)
    logits = collected.logits
    import numpy as np

    y = np.asarray(labels, dtype=np.int64)
    points = dynamic_evaluation(logits[fit], logits[held], y[held], cost, criterion=args.criterion)
    fixed = fixed_exit_points(logits[held], y[held], cost)
    chosen = None
    if args.budget is not None:
        chosen, _ = budget_search(logits[fit], logits[held], y[held], cost, args.budget, criterion=args.criterion)

    _print_table(out, m.model_name, args.criterion, len(fit), len(held), points, fixed, chosen, args.budget)
    if args.curve:
        paths = write_curve(Curve(m.model_name, args.criterion, len(fit), len(held), tuple(points), tuple(fixed)), args.curve)
        out.print("curve: " + ", ".join(str(p) for p in paths.values()))
    if chosen is not None:
        store_thresholds(args.bundle, chosen.thresholds, args.criterion)
        out.print(
            f"wrote {args.criterion} thresholds for {args.budget:g} GFLOPs into {Path(args.bundle) / 'manifest.json'}: "
            f"held-out accuracy {chosen.accuracy:.2%} at {chosen.gflops:.4g} GFLOPs per video; 'videploy predict' uses them by default"
        )
    return 2 if collected.failures else 0


def _print_table(out: Any, model: str, criterion: str, n_fit: int, n_held: int, points: list, fixed: list, chosen: Any, budget: float | None) -> None:
    from rich.table import Table

    t = Table(title=f"{model}: {criterion} thresholds fitted on {n_fit} videos, measured on {n_held} held-out videos")
    t.add_column("q", justify="right")
    t.add_column("GFLOPs", justify="right")
    t.add_column("accuracy", justify="right")
    t.add_column("random exit", justify="right")
    t.add_column("videos per exit (glance first)")
    t.add_row("glance only", f"{fixed[0][0]:.4g}", f"{fixed[0][1]:.2%}", "", "")
    for p in points:
        t.add_row("-" if p.q is None else f"{p.q:g}", f"{p.gflops:.4g}", f"{p.accuracy:.2%}", f"{p.random_accuracy:.2%}", " ".join(map(str, p.exit_counts)))
    t.add_row("all steps", f"{fixed[-1][0]:.4g}", f"{fixed[-1][1]:.2%}", "", "")
    if chosen is not None:
        t.add_row(
            f"budget {budget:g}", f"{chosen.gflops:.4g}", f"{chosen.accuracy:.2%}", f"{chosen.random_accuracy:.2%}", " ".join(map(str, chosen.exit_counts)), style="bold"
        )
    out.print(t)
