"""``videploy predict``: run a bundle on video files and show the top classes."""

from __future__ import annotations

import argparse
import math
from typing import Any

DESCRIPTION = """\
Run an exported bundle on real videos, without PyTorch: the runtime decodes each video with
OpenCV, samples frames and preprocesses them exactly as the model's official evaluation does
(recorded in the bundle's manifest), runs the graphs on the chosen backend and prints the top
classes with their probabilities and the compute spent.

Video-FocalNet / STAM: one pass per view; --views CLIPSxCROPS averages the softmax over
several clips and crops (the official multi-view test, e.g. 4x3; 'official' uses the bundle's).

AdaFocusV3: glance -> policy -> local-encoder steps, and each video STOPS as soon as its
prediction is confident (entropy <= eta_t at exit t) -- the remaining steps are really skipped.
Thresholds come from --thresholds, else the bundle, else none (every step runs). --budget
GFLOPS picks thresholds for an average cost per video (paper Eq. 7) -- fitted here on the
videos you pass, which only demonstrates the method: fit them on a calibration set for real use.
The result shows the exit taken, the cubes looked at (frames + boxes) and the GFLOPs spent;
--visualize draws the cubes.

Damaged or unreadable videos are reported one by one (one 'videploy predict: error:' line
each, exit status 2); the others are still predicted. A video that is only partly readable
(truncated, fewer frames than the model samples, a wrong frame count) is predicted from the
frames that decode, with a note saying so. FFmpeg's own messages are hidden; 'videploy -v
predict ...' shows them (and tracebacks).
"""

EPILOG = """\
examples:
  videploy predict vfn_t/ walk.mp4 run.mp4 --labels k400.txt
  videploy predict vfn_t/ walk.mp4 --views 4x3 --top-k 3           official 12-view test
  videploy predict stam/ clips/*.mp4 --json > predictions.json
  videploy predict ada/ video.mp4 --thresholds 0.5,0.8,0.8,1.0,...  one eta per exit (glance first)
  videploy predict ada/ clips/*.mp4 --budget 8.5                    average 8.5 GFLOPs per video
  videploy predict ada/ video.mp4 --visualize focus.png             draw the focus boxes
  videploy predict vfn_t/ walk.mp4 --backend onnxruntime --device cuda
  videploy predict vfn_t/ walk.mp4 --backend tensorrt               engines from 'videploy build'

exit status: 0 all videos predicted; 2 an error (bad bundle or arguments, or some video failed).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from videploy.cli.options import add_exit_threshold_arguments, verbose_parent
    from videploy.runtime.backends import BACKENDS  # the registry (names only: nothing heavy is imported)

    p = subparsers.add_parser(
        "predict",
        help="run a bundle on videos (no torch needed)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by 'videploy export'")
    p.add_argument("videos", metavar="VIDEO", nargs="+", help="video files (anything OpenCV/FFmpeg decodes: mp4, avi, mkv, webm, ...)")
    p.add_argument("--backend", choices=list(BACKENDS), help="onnxruntime, openvino, tensorrt (native engines), torch (PyTorch reference; needs torch); default: on the CPU, the backend 'videploy bench --set-default' measured fastest for this bundle, else onnxruntime")
    p.add_argument("--device", metavar="DEV", help="the backend's default if not given (cpu; tensorrt: cuda); onnxruntime also takes cuda, or tensorrt (its TensorRT provider)")
    p.add_argument("--precision", metavar="P", help="engine / graph variant to run: fp32, fp16, int8, int8-cpu (default: the exported graph; tensorrt: the bundle's engines)")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line or id,name CSV (default: the bundle's, if any)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes to show per video (default 5)")
    p.add_argument("--views", metavar="CxK", help="multi-view test: CLIPSxCROPS (crops 1 or 3), or 'official' (default 1x1)")
    add_exit_threshold_arguments(p, fitted_on="the given videos themselves (a demonstration; videploy calibrate-exits fits them on labelled videos)")
    p.add_argument("--batch-size", type=int, metavar="N", help="rows per backend call (default: the bundle's maximum batch)")
    p.add_argument(
        "--continuous",
        action=argparse.BooleanOptionalAction,
        help="AdaFocusV3 batching: continuous (the default) refills the local-encoder batch as videos exit; --no-continuous runs each batch to its end (static). Same results either way",
    )
    p.add_argument("--visualize", metavar="OUT", help="AdaFocusV3: draw the focus cubes to OUT.png/.jpg (contact sheet) or OUT.mp4/.avi")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--threads", type=int, metavar="N", help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    p.add_argument("--decode-workers", type=int, default=1, metavar="N", help="threads decoding the next videos while the model runs (default 1; 0 decodes inline)")
    p.add_argument("--checkpoint", metavar="PATH", help="--backend torch only: the checkpoint the bundle was exported from")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from videploy.cli.options import stdout_console

    from videploy import jsonsafe
    from videploy.cli.options import prediction_options
    from videploy.jobs.predict import PredictOptions, predict_files
    from videploy.runtime.video import quiet_decoder_logs

    if not getattr(args, "verbose", False):
        quiet_decoder_logs()  # damaged files are reported below, one line each; -v shows FFmpeg's details
    out = stdout_console()
    err = Console(stderr=True, highlight=False)
    options = PredictOptions(
        **prediction_options(args),
        budget=args.budget,
        visualize=args.visualize,
        checkpoint=args.checkpoint,
        decode_workers=args.decode_workers,
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # on a terminal only: piped stderr gets the error lines alone
    progress = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)
    task = progress.add_task("videos", total=len(args.videos))
    printed_header = False

    def on_result(run: Any, result: Any) -> None:
        nonlocal printed_header
        progress.advance(task)
        if args.json:
            return  # one JSON document at the end
        if not printed_header:
            print_header(out, run)
            printed_header = True
        print_result(out, result)

    def on_failure(_: str, message: str) -> None:
        progress.advance(task)
        # one line per video (no wrapping), so scripts can grep the failures
        err.print(f"videploy predict: error: {message}", markup=False, soft_wrap=True)

    with progress:
        run = predict_files(args.bundle, args.videos, options, on_failure=on_failure, on_result=on_result)
    if args.json:
        print(jsonsafe.dumps(run.to_dict(), indent=2))
    else:
        if not printed_header:
            print_header(out, run)
        print_footer(out, run)
    return 2 if run.failures else 0


def print_run(out: Any, run: Any) -> None:
    """The whole run as tables (``videploy demo`` prints a finished run)."""
    print_header(out, run)
    for r in run.results:
        print_result(out, r)
    print_footer(out, run)


def print_header(out: Any, run: Any) -> None:
    rec = run.recognizer
    m = rec.manifest
    out.print(f"[bold]{m.model_name}[/] ({m.family}, {m.precision}) on {rec.backend.name}/{rec.backend.device}")
    if rec.random_weights:
        out.print("[bold red]RANDOM WEIGHTS[/]: this bundle was exported without a checkpoint; its predictions mean nothing.")
    if run.thresholds is not None:
        shown = ", ".join(_fmt_eta(t) for t in run.thresholds.values)
        criterion = m.early_exit.criterion
        unit = "entropy in nats, stop when <= eta" if criterion == "entropy" else "largest logit, stop when >= eta"
        out.print(f"exit thresholds ({unit}; glance first; {run.thresholds.source}): {shown}")
        if run.thresholds.source == "budget":
            out.print(f"[yellow]--budget {run.thresholds.budget:g} GFLOPs[/]: expected {run.thresholds.expected_gflops:.3f} GFLOPs/video. [yellow]{run.thresholds.note}[/]")
    for note in run.notes:
        out.print(f"[yellow]note:[/] {note}")


def print_result(out: Any, r: Any) -> None:
    from rich.table import Table

    out.print()
    out.print(f"[bold]{r.source}[/]", markup=True)
    table = Table(show_edge=True, min_width=48)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("class", overflow="fold")
    table.add_column("probability", justify="right", no_wrap=True)
    for rank, c in enumerate(r.top, 1):
        table.add_row(str(rank), c.name, f"{c.probability:.2%}")
    lines = [f"frames {r.frame_indices[0].tolist()} of {r.num_frames}; views {r.views[0]}x{r.views[1]}; {r.gflops:.3f} GFLOPs"]
    if r.timing is not None:
        lines.append(f"decode {r.timing.decode_s * 1e3:.0f} ms; latency {r.timing.latency_s * 1e3:.0f} ms (decode start to result)")
    if r.adaptive is not None:
        a = r.adaptive
        cubes = "; ".join(f"{c.step}: frame {','.join(map(str, c.frames))} box ({c.box[0]:.0f},{c.box[1]:.0f})-({c.box[2]:.0f},{c.box[3]:.0f})" for c in a.cubes)
        lines.append(f"exit {a.exit_step}/{a.num_steps} ({r.gflops:.3f} of {a.full_gflops:.3f} GFLOPs); criterion at exit {a.entropies[-1]:.3f}")
        if cubes:
            lines.append(f"cubes looked at (boxes in model-input pixels) - {cubes}")
    lines += [f"[yellow]note:[/] {n}" for n in r.notes if not n.startswith("the bundle has random weights")]
    out.print(table)
    for line in lines:
        out.print(f"  {line}")


def print_footer(out: Any, run: Any) -> None:
    rec = run.recognizer
    if run.results:
        c = rec.counters
        work = ", ".join(f"{role} {c.calls.get(role, 0)} calls / {c.rows.get(role, 0)} rows" for role in [g.role for g in rec.manifest.graphs])
        out.print(f"work done: {work}")
    for path in run.visualizations:
        out.print(f"focus cubes drawn to {path}")


def _fmt_eta(t: float) -> str:
    return "inf" if t == math.inf else ("-inf" if t == -math.inf else f"{t:.3f}")
