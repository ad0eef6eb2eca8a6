"""``videploy predict``: run a bundle on video files and show the top classes."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator
from videploy import jsonsafe
from videploy.jsonsafe import encode_float

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
  videploy predict ada/ clips/*.mp4 --budget 8.5 --continuous       average 8.5 GFLOPs per video
  videploy predict ada/ video.mp4 --visualize focus.png             draw the focus boxes
  videploy predict vfn_t/ walk.mp4 --backend onnxruntime --device cuda
  videploy predict vfn_t/ walk.mp4 --backend tensorrt               engines from 'videploy build'

exit status: 0 all videos predicted; 2 an error (bad bundle or arguments, or some video failed).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict",
        help="run a bundle on videos (no torch needed)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by 'videploy export'")
    p.add_argument("videos", metavar="VIDEO", nargs="+", help="video files (anything OpenCV/FFmpeg decodes: mp4, avi, mkv, webm, ...)")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt", "torch"], help="onnxruntime (default), tensorrt (native engines), torch (PyTorch reference; needs torch)")
    p.add_argument("--device", metavar="DEV", help="cpu (default), cuda, or tensorrt (onnxruntime's TensorRT provider); the tensorrt backend always uses cuda")
    p.add_argument("--precision", metavar="P", help="engine / graph variant to run: fp32, fp16, int8 (default: the exported graph; tensorrt: the bundle's engines)")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line or id,name CSV (default: the bundle's, if any)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes to show per video (default 5)")
    p.add_argument("--views", metavar="CxK", help="multi-view test: CLIPSxCROPS (crops 1 or 3), or 'official' (default 1x1)")
    exits = p.add_mutually_exclusive_group()
    exits.add_argument("--thresholds", metavar="T0,T1,...", help="AdaFocusV3 exit thresholds eta_0..eta_T in nats (inf / -inf allowed)")
    exits.add_argument("--budget", type=float, metavar="GFLOPS", help="AdaFocusV3: fit thresholds to this average GFLOPs per video (Eq. 7) on the given videos")
    p.add_argument("--batch-size", type=int, metavar="N", help="rows per backend call (default: the bundle's maximum batch)")
    p.add_argument("--continuous", action="store_true", help="AdaFocusV3: continuous batching (refill the local-encoder batch as videos exit)")
    p.add_argument("--visualize", metavar="OUT", help="AdaFocusV3: draw the focus cubes to OUT.png/.jpg (contact sheet) or OUT.mp4/.avi")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--threads", type=int, metavar="N", help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    p.add_argument("--checkpoint", metavar="PATH", help="--backend torch only: the checkpoint the bundle was exported from")
    p.set_defaults(func=run)
    return p


def parse_thresholds(text: str) -> list[float]:
    from videploy.errors import VideployError

    out = []
    for part in text.split(","):
        s = part.strip().lower()
        try:
            v = float(s)  # accepts inf, -inf, +inf
        except ValueError:
            raise VideployError(f"--thresholds {text!r}: {part.strip()!r} is not a number (use e.g. 0.5,1.2,inf)") from None
        if math.isnan(v):
            raise VideployError(f"--thresholds {text!r}: nan is not a threshold")
        out.append(v)
    return out


def _visualize_path(base: str, index: int, count: int) -> Path:
    p = Path(base)
    return p if count == 1 else p.with_name(f"{p.stem}_{index + 1}{p.suffix}")


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from rich.console import Console

    from videploy.calibration.exit_thresholds import thresholds_for_budget
    from videploy.errors import VideployError
    from videploy.runtime import load
    from videploy.runtime.video import check_view_counts, quiet_decoder_logs

    if not getattr(args, "verbose", False):
        quiet_decoder_logs()  # damaged files are reported below, one line each; -v shows FFmpeg's details
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    if args.top_k < 1:
        raise VideployError(f"--top-k must be >= 1, got {args.top_k}")

    options: dict[str, Any] = {}
    backend: Any = args.backend
    device = args.device or ("cuda" if args.backend == "tensorrt" else "cpu")
    if args.backend == "torch":
        from videploy.export.torch_backend import (
            TorchBackend,  # needs torch: only on request
        )

        backend = partial(TorchBackend, checkpoint=args.checkpoint)
    elif args.checkpoint:
        raise VideployError("--checkpoint is for --backend torch (the other backends run the bundle's graphs)")
    if args.threads is not None:
        if args.backend != "onnxruntime":
            raise VideployError("--threads applies to the onnxruntime backend")
        options["threads"] = args.threads
    rec = load(args.bundle, backend=backend, device=device, labels=args.labels, precision=args.precision, **options)
    m = rec.manifest
    adaptive = rec.adaptive is not None
    if not adaptive:
        for flag, value in (("--thresholds", args.thresholds), ("--budget", args.budget), ("--visualize", args.visualize), ("--continuous", args.continuous or None)):
            if value is not None:
                raise VideployError(f"{flag} is for adaptive (AdaFocusV3) bundles; {m.model_name!r} is a {m.family} bundle")
    views = rec.views(args.views)  # validate before decoding anything
    check_view_counts(*views)
    if args.visualize:
        from videploy.runtime.visualize import check_output_path

        check_output_path(args.visualize)  # before decoding anything

    failures: list[tuple[str, str]] = []

    def prepared() -> Iterator[Any]:
        for v in args.videos:
            try:
                vi = rec.prepare(v, args.views)
            except VideployError as exc:
                failures.append((v, str(exc)))
                continue
            # the display crops (T x H x W x 3 per video) are only drawn by --visualize; results keep
            # whatever their input carries, so drop them here to keep a run over many videos flat
            yield vi if args.visualize else dataclasses.replace(vi, display_frames=None)

    thresholds = parse_thresholds(args.thresholds) if args.thresholds else None
    budget_info: dict[str, Any] | None = None
    if args.budget is not None:
        inputs = list(prepared())
        if inputs:
            full = rec.predict_batch(inputs, thresholds=[-math.inf] * (m.early_exit.num_steps + 1), batch_size=args.batch_size, continuous=args.continuous)
            import numpy as np

            ent = np.array([p.adaptive.entropies for p in full])
            sol = thresholds_for_budget(ent, m.early_exit.exit_gflops, args.budget)
            thresholds = list(sol.thresholds)
            budget_info = {
                "budget_gflops": args.budget,
                "expected_gflops": sol.expected_gflops,
                "q": sol.q,
                "exit_fractions": list(sol.exit_fractions),
                "fitted_on": len(inputs),
                "note": (
                    f"thresholds fitted on the {len(inputs)} input video(s) themselves: a demonstration of Eq. 7; "
                    "fit them on a calibration set of representative videos for real use"
                ),
            }
            rec.counters.reset()  # report the work of the real (early-exit) run only
        source: Any = inputs
    else:
        source = prepared()
    results = rec.predict_batch(source, top_k=args.top_k, thresholds=thresholds, batch_size=args.batch_size, continuous=args.continuous)

    written = []
    if args.visualize:
        for i, r in enumerate(results):
            written.append(str(_visualize_written(r, _visualize_path(args.visualize, i, len(results)))))

    if args.json:
        doc = {
            "bundle": str(args.bundle),
            "model": m.model_name,
            "family": m.family,
            "backend": args.backend,
            "device": device,
            "random_weights": rec.random_weights,
            "views": {"clips": views[0], "crops": views[1]},
            "thresholds": None if not adaptive else {
                "values": [encode_float(t) for t in (thresholds if thresholds is not None else rec.adaptive.thresholds())],
                "source": "budget" if budget_info else ("call" if args.thresholds else ("bundle" if m.early_exit.thresholds else "none (all steps)")),
                **({"budget": budget_info} if budget_info else {}),
            },
            "work": {"calls": dict(rec.counters.calls), "rows": dict(rec.counters.rows)},
            "results": [r.to_dict() for r in results],
            "errors": [{"source": s, "error": e} for s, e in failures],
            "visualizations": written,
        }
        print(jsonsafe.dumps(doc, indent=2))
    else:
        _print_tables(out, rec, args, results, thresholds, budget_info, written)
    for source_name, message in failures:
        # one line per video (no wrapping), so scripts can grep the failures
        err.print(f"videploy predict: error: {message}", markup=False, soft_wrap=True)
    return 2 if failures else 0


def _visualize_written(result: Any, path: Path) -> Path:
    from videploy.runtime.visualize import write_visualization

    return write_visualization(result, path)



def _print_tables(out: Any, rec: Any, args: argparse.Namespace, results: list, thresholds: list[float] | None, budget_info: dict | None, written: list[str]) -> None:
    from rich.table import Table

    m = rec.manifest
    head = f"[bold]{m.model_name}[/] ({m.family}, {m.precision}) on {args.backend}/{rec.backend.device}"
    out.print(head)
    if rec.random_weights:
        out.print("[bold red]RANDOM WEIGHTS[/]: this bundle was exported without a checkpoint; its predictions mean nothing.")
    if rec.adaptive is not None:
        eta = thresholds if thresholds is not None else list(rec.adaptive.thresholds())
        shown = ", ".join(_fmt_eta(t) for t in eta)
        out.print(f"exit thresholds (nats, glance first): {shown}")
        if budget_info:
            out.print(
                f"[yellow]--budget {budget_info['budget_gflops']:g} GFLOPs[/]: expected {budget_info['expected_gflops']:.3f} GFLOPs/video. "
                f"[yellow]{budget_info['note']}[/]"
            )
    for r in results:
        out.print()
        out.print(f"[bold]{r.source}[/]")
        table = Table(show_edge=True, min_width=48)
        table.add_column("#", justify="right")
        table.add_column("class")
        table.add_column("probability", justify="right")
        for rank, c in enumerate(r.top, 1):
            table.add_row(str(rank), c.name, f"{c.probability:.2%}")
        lines = [f"frames {r.frame_indices[0].tolist()} of {r.num_frames}; views {r.views[0]}x{r.views[1]}; {r.gflops:.3f} GFLOPs"]
        if r.adaptive is not None:
            a = r.adaptive
            cubes = "; ".join(f"{c.step}: frame {','.join(map(str, c.frames))} box ({c.box[0]:.0f},{c.box[1]:.0f})-({c.box[2]:.0f},{c.box[3]:.0f})" for c in a.cubes)
            lines.append(f"exit {a.exit_step}/{a.num_steps} ({r.gflops:.3f} of {a.full_gflops:.3f} GFLOPs); entropy at exit {a.entropies[-1]:.3f}")
            if cubes:
                lines.append(f"cubes looked at - {cubes}")
        lines += [f"[yellow]note:[/] {n}" for n in r.notes if not n.startswith("the bundle has random weights")]
        out.print(table)
        for line in lines:
            out.print(f"  {line}")
    if results:
        c = rec.counters
        work = ", ".join(f"{role} {c.calls.get(role, 0)} calls / {c.rows.get(role, 0)} rows" for role in [g.role for g in m.graphs])
        out.print(f"work done: {work}")
    for path in written:
        out.print(f"focus cubes drawn to {path}")


def _fmt_eta(t: float) -> str:
    return "inf" if t == math.inf else ("-inf" if t == -math.inf else f"{t:.3f}")
