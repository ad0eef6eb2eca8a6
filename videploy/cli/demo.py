"""``videploy demo``: the trained built-in task end to end -- what early exit buys, in real numbers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Answer a user's first question with real numbers: how accurate, at how many GFLOPs, how fast,
with and without AdaFocusV3's early exit. Offline, on this machine, in a few minutes.

videploy ships small weights trained with its own training code ('videploy train') on its own
generated action videos ('videploy dataset'): ten classes of a small triangle that moves,
grows, shrinks, rotates or blinks during part of a cluttered clip -- where and when matter.
The demo

  1. generates the validation and test clips (or reuses them: ~/.cache/videploy, or --cache);
  2. exports the trained AdaFocusV3, Video-FocalNet and STAM to ONNX bundles, each verified
     against PyTorch, with the class names inside;
  3. fits AdaFocusV3's exit thresholds on the validation split (paper Eq. 7) for three budgets
     (40%, 50% and 60% of the all-steps GFLOPs) and stores the last in the bundle;
  4. runs the torch-free runtime (onnxruntime) on the test split, once per row of the table:
       glance only                 the cheap global look alone (exit 0)
       all steps                   every focus step: the full model
       random policy, all steps    random cubes instead of the learned policy (paper Table 5)
       2 steps, random policy, 2 steps   the two policies after two focus steps
       early exit, budget B        each video stops at its first confident exit, B GFLOPs on average
       Video-FocalNet, STAM        the trained comparison models
     accuracy on the test split, the GFLOPs each video really spent (averaged) and videos per
     second as measured here (decoding included, as 'videploy predict' runs);
  5. writes the accuracy-vs-GFLOPs curve (exit_curve.png), draws the cubes the trained policy
     chose on a few test videos (cubes_*.png) and says how often they land on the acting object.

It ends with the commands that do each step by hand.
"""

EPILOG = """\
examples:
  videploy demo                              the table; files in ./videploy-demo
  videploy demo --json > demo.json           the same table as JSON on stdout (progress on stderr)
  videploy demo --out /tmp/d --videos 100    the first 100 validation and test videos only
  videploy demo --cache data/                keep the generated clips in data/

exit status: 0 done; 2 an error (the message says what to fix).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from videploy.cli.options import verbose_parent

    p = subparsers.add_parser(
        "demo",
        help="the trained built-in task: accuracy, GFLOPs and speed with and without early exit",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    p.add_argument("--out", default="videploy-demo", metavar="DIR", help="bundles, curve, cube drawings and demo.json go here (default ./videploy-demo)")
    p.add_argument("--cache", metavar="DIR", help="where the generated clips are kept and reused (default $VIDEPLOY_CACHE, else ~/.cache/videploy)")
    p.add_argument("--videos", type=int, metavar="N", help="use only the first N validation and N test videos (default: all 300 of each)")
    p.add_argument("--threads", type=int, metavar="N", help="onnxruntime intra-op threads (default: onnxruntime's choice, all cores)")
    p.add_argument("--json", action="store_true", help="print the table as JSON on stdout: {num_classes, rows: [{name, accuracy, gflops_per_video, videos_per_s}], ...}")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import logging
    import sys

    from rich.console import Console

    from videploy import jsonsafe
    from videploy.cli.options import stdout_console
    from videploy.errors import VideployError
    from videploy.jobs.demo import run_demo

    if args.videos is not None and args.videos < 10:
        raise VideployError(f"--videos must be at least 10 (one per class), got {args.videos}")
    if args.threads is not None and args.threads < 1:
        raise VideployError(f"--threads must be >= 1, got {args.threads}")
    if not args.verbose:
        from videploy.runtime.video import quiet_decoder_logs

        quiet_decoder_logs()  # the generated clips are fine; FFmpeg chatter would only distract
        logging.getLogger("videploy.export.api").setLevel(logging.ERROR)
    # progress and steps go to stderr with --json, so stdout is exactly one JSON document
    out = Console(stderr=True, highlight=False) if args.json else stdout_console()
    result = run_demo(args.out, cache=args.cache, say=out.print, threads=args.threads, max_videos=args.videos)
    if args.json:
        sys.stdout.write(jsonsafe.dumps(result.to_dict(), indent=2) + "\n")
        return 0
    print_result(out, result, Path(args.out))
    return 0


def print_result(out: Any, result: Any, work: Path) -> None:
    from rich.table import Table

    t = Table(title=f"AdaFocusV3 on the built-in task: {result.test_videos} test videos, {result.num_classes} classes (chance {1 / result.num_classes:.0%})")
    t.add_column("")
    t.add_column("accuracy", justify="right")
    t.add_column("GFLOPs / video", justify="right")
    t.add_column("videos / s", justify="right")
    full = next(r for r in result.rows if r.name == "all steps")
    for r in result.rows:
        share = f" ({r.gflops_per_video / full.gflops_per_video:.0%})" if r.model == full.model else ""
        t.add_row(r.name, f"{r.accuracy:.1%}", f"{r.gflops_per_video:.4f}{share}", f"{r.videos_per_s:.1f}")
    out.print()
    out.print(t)
    chance = 1 / result.num_classes
    weak = [r.name for r in result.rows if r.accuracy < chance + 0.1]
    if weak:
        out.print(f"near chance ({', '.join(weak)}): trained from scratch with the same data and recipe family, these did not learn the task in their budget (README: the built-in task)")
    f = result.focus
    out.print(
        f"where the trained policy looked (all steps, test split): {f['cubes_on_actor']:.0%} of its cubes contain the acting object, "
        f"against {f['random_boxes_on_actor']:.0%} for boxes of the same sizes placed at random; "
        f"{f['distinct_first_boxes']:.0%} of the videos got a first cube of their own"
    )
    out.print(f"GFLOPs are the graphs' own counts per video (percent of all steps in brackets); videos/s measured on this machine, decoding included ({result.seconds:.0f} s in all)")
    out.print("files: " + ", ".join(str(p) for k, p in result.files.items() if k in ("curve_png", "cubes_0", "json")) + f" (and {len(result.files) - 3} more in {work})")
    budget = next((r.name.split("budget ", 1)[1] for r in result.rows if r.name.startswith("early exit, budget")), "0.05")
    ada = result.bundles.get("adafocusv3_actions", str(work / "bundles" / "adafocusv3_actions"))
    out.print("\n[bold]by hand[/], step by step (runs/ is any folder of yours):")
    for cmd, what in (
        ("videploy dataset runs/actions", "the clips: train / val / test splits, labels, actor boxes (~40 s)"),
        ("videploy train adafocusv3_actions --data runs/actions --weights runs/ada.safetensors", "reproduce the shipped weights (README: the built-in task)"),
        ("videploy export adafocusv3_actions -o runs/ada --checkpoint runs/ada.safetensors --labels runs/actions/labels.txt", "a verified bundle"),
        (f"videploy calibrate-exits runs/ada --videos runs/actions/val.csv --budget {budget} --curve runs/exit_curve", "fit exit thresholds, store them in the bundle"),
        ("videploy quantize runs/ada --videos runs/actions/val.csv -o runs/ada-int8", "INT8 from validation clips, with an agreement report"),
        ("videploy predict runs/ada runs/actions/test/move_left_00014.mp4 --visualize runs/cubes.png", "predict with early exit, draw the cubes"),
        (f"videploy bench {ada}", "measure each graph"),
    ):
        out.print(f"  {cmd}", markup=False, highlight=False)
        out.print(f"      [dim]{what}[/]")
