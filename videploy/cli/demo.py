"""``videploy demo``: the whole pipeline on a small model and a real video, in well under a minute."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

# Small configurations of each family (official keyword names): the real architectures, shrunk
# where the family allows it, so export + verification + prediction take seconds on 2 CPU cores.
DEMO_MODELS: dict[str, tuple[str, dict[str, Any], str]] = {
    "adafocusv3": (
        "adafocusv3",
        dict(num_segments=8, num_glance_segments=4, num_focus_segments=4, num_classes=10, patch_size=96),
        "MobileNetV2 glance + ResNet-50 local encoder, 8 frames, up to 4 focus steps of 96x96 patches",
    ),
    "video_focalnet": (
        "video_focalnet",
        dict(img_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_classes=10),
        "Video-FocalNet with 4 stages of one block each, 8 frames of 64x64",
    ),
    "stam": (
        "stam_8",
        dict(img_size=64, embed_dim=64, depth=2, num_heads=4, num_classes=10, aggregate={"clip_length": 8, "embed_dim": 64, "n_layers": 1}),
        "STAM with a 2-layer ViT and a 1-layer temporal transformer, 8 frames of 64x64",
    ),
}
DEFAULT_MODEL = "adafocusv3"

DESCRIPTION = """\
Run the whole videploy pipeline once, end to end, on a small model:

  1. export: build the model (RANDOM weights -- there is no download here), export it to ONNX,
     verify the graphs against PyTorch on real video frames, write a bundle;
  2. predict: decode real videos with OpenCV and run the bundle with onnxruntime (the runtime
     that ships to devices; it does not use torch);
  3. for AdaFocusV3 (the default): pick exit thresholds for a compute budget halfway between
     the glance and the full model, so videos stop at different steps, and show the exit each
     video took, the cubes it looked at and the GFLOPs it really spent.

The weights are random, so the predicted classes mean nothing; everything else (decoding,
sampling, preprocessing, graphs, early exits, costs) is exactly what a trained model gets.
"""

EPILOG = """\
examples:
  videploy demo                                   AdaFocusV3, sample video, temporary directory
  videploy demo --out demo/                       keep the bundle and the focus picture in demo/
  videploy demo --model video_focalnet --video my_clip.mp4
  videploy demo --model stam

next: videploy export MODEL -o DIR --checkpoint CKPT (real weights), videploy predict DIR VIDEO...
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from videploy.cli.options import verbose_parent

    p = subparsers.add_parser(
        "demo",
        help="export a small model and run it on a video (the quick tour)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    p.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(DEMO_MODELS), help=f"family to demonstrate (default {DEFAULT_MODEL})")
    p.add_argument("--video", action="append", metavar="PATH", help="video to predict (repeatable; default: the sample clip and a generated one)")
    p.add_argument("--out", metavar="DIR", help="keep the bundle (DIR/bundle) and pictures here (default: a temporary directory)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import logging

    from videploy.cli.options import stdout_console

    out = stdout_console()
    if not args.verbose:
        from videploy.runtime.video import quiet_decoder_logs

        quiet_decoder_logs()  # the demo's videos are fine; FFmpeg chatter would only distract
    # the demo says RANDOM WEIGHTS itself; the library's own warning (for Python callers) would repeat it
    logging.getLogger("videploy.export.api").setLevel(logging.ERROR)
    if args.out:
        work = Path(args.out)
        work.mkdir(parents=True, exist_ok=True)
        return _run(args, work, out)
    with tempfile.TemporaryDirectory(prefix="videploy-demo-") as tmp:
        return _run(args, Path(tmp), out)


def _run(args: argparse.Namespace, work: Path, out: Any) -> int:
    from videploy.cli.predict import print_run
    from videploy.errors import VideployError
    from videploy.jobs.predict import PredictOptions, predict_files
    from videploy.export.api import export_bundle
    from videploy.runtime.samples import sample_video_path, write_synthetic_video

    name, overrides, what = DEMO_MODELS[args.model]
    t0 = time.perf_counter()
    out.print(f"[bold]videploy demo[/]: {what}")
    out.print("[bold red]RANDOM WEIGHTS[/]: no checkpoint is used, so the predicted classes are meaningless; the pipeline is real.")

    bundle = work / "bundle"
    if bundle.exists() and not (bundle / "manifest.json").is_file():
        raise VideployError(f"{str(bundle)!r} exists and is not a bundle; choose another --out")
    out.print(f"\n[bold]1. export[/] {name} -> {bundle}")
    result = export_bundle(name, bundle, overrides=overrides, overwrite=True, batch="1:4:8", progress=lambda msg: out.print(f"   {msg}"))
    out.print(f"   verified against PyTorch: {_verification_line(result)} ({result.seconds:.1f} s)")

    if args.video:
        videos = list(args.video)
    else:
        videos = [str(sample_video_path()), str(write_synthetic_video(work / "moving_ball.mp4", 64, (180, 240), fps=16, pattern="moving"))]
    adaptive = result.manifest.early_exit is not None
    out.print(f"\n[bold]2. predict[/] with onnxruntime on {len(videos)} video(s) (the runtime; no torch)")
    budget = None
    if adaptive:
        cost = result.manifest.early_exit.exit_gflops
        budget = round((cost[0] + cost[-1]) / 2, 3)
        out.print(f"   AdaFocusV3 early exits: --budget {budget} GFLOPs/video (glance alone {cost[0]:.2f}, all steps {cost[-1]:.2f})")
    visualize = str(work / "focus.png") if (adaptive and args.out) else None
    options = PredictOptions(top_k=3, budget=budget, continuous=adaptive, visualize=visualize)
    run = predict_files(bundle, videos, options, on_failure=lambda video, message: out.print(f"   error: {message}", markup=False))
    print_run(out, run)
    code = 2 if run.failures else 0
    out.print(f"\n[bold]done[/] in {time.perf_counter() - t0:.1f} s. [bold red]Reminder: random weights[/] -- export with --checkpoint for real predictions.")
    if args.out:
        out.print(f"bundle kept in {bundle}; try: videploy predict {bundle} YOUR_VIDEO.mp4")
    else:
        out.print("(everything was in a temporary directory; pass --out DIR to keep the bundle" + (" and the focus picture)" if adaptive else ")"))
    return code


def _verification_line(result: Any) -> str:
    report = result.report
    rows = report.worst()
    if not rows:
        return "passed" if report.passed else "FAILED"
    worst = max(r.max_rel for r in rows)
    return f"{'passed' if report.passed else 'FAILED'}, {len(report.results)} output comparisons, worst relative error {worst:.1e}"
