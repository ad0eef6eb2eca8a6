"""``videploy export``: a zoo model -> a verified ONNX bundle directory."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DESCRIPTION = """\
Export a model of the zoo to a deployable bundle: ONNX graph(s) + manifest.json.

What happens, in order:
  1. the model is built (zoo name or family + overrides) and, with --checkpoint, loaded with
     official or own weights (without one: RANDOM weights, loudly flagged, "weights": null);
  2. each deployment graph is exported with torch.onnx (dynamo), batch dimension dynamic;
     Video-FocalNet / STAM give one graph (main), AdaFocusV3 three (glance, policy, local);
  3. graphs are simplified with onnxslim (--no-simplify to skip), checked with the full ONNX
     checker, and refused if they contain ops TensorRT's ONNX parser rejects;
  4. the graphs run in onnxruntime on frames of a real video (preprocessed exactly as the
     runtime will) and are compared with PyTorch at batch 1 and 2 — for AdaFocusV3 the whole
     glance -> policy -> local-step chain, at every exit. Any output beyond tolerance fails the
     export and NO bundle is written;
  5. manifest.json records model, config, preprocessing, graph I/O, GFLOPs per graph and per
     exit, the verification report and provenance. The bundle appears atomically.
"""

EPILOG = """\
examples:
  videploy export video_focalnet_tiny -o vfn_t/ --checkpoint video-focalnet_tiny_k400.pth --labels k400.txt
  videploy export stam_16 -o stam/ --batch 1:4:8            dynamic batch, TensorRT profile 1..8, tuned for 4
  videploy export adafocusv3_mbv2_r50 -o ada/ --batch 8     fixed batch 8 engines
  videploy export video_focalnet -o tiny/ --set embed_dim=16 --set depths=[1,1,1,1] --image-size 64 --frames 4
  videploy export stam_8 -o s8/ --num-classes 10 --opset 18 --no-simplify --overwrite

--set KEY=VALUE takes the official constructor keyword names (see 'videploy models');
values are JSON or Python literals: 16, 0.1, true, [1,1,1,1], "name".
next: videploy inspect DIR, videploy predict DIR video.mp4, videploy build DIR --precision fp16
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from videploy.cli.options import verbose_parent

    p = subparsers.add_parser(
        "export",
        help="PyTorch -> verified ONNX bundle (graphs + manifest)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    p.add_argument("model", metavar="MODEL", help="zoo name (video_focalnet_tiny, stam_16, adafocusv3_mbv2_r50, ...) or family name")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle directory to create")
    p.add_argument("--checkpoint", metavar="PATH", help="official or own .pth weights (loaded strictly, weights_only)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override an official constructor keyword (repeatable)")
    p.add_argument("--frames", type=int, metavar="N", help="frames per clip (num_frames / num_segments of the family)")
    p.add_argument("--image-size", type=int, metavar="PX", help="input height = width in pixels")
    p.add_argument("--num-classes", type=int, metavar="N", help="number of classes of the classifier head")
    p.add_argument(
        "--batch",
        default="1:4:16",
        metavar="SPEC",
        help="batch sizes engines are built for: N (fixed), MIN:MAX or MIN:OPT:MAX (default 1:4:16); ONNX graphs are always batch-dynamic",
    )
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the exporter's, 20 with torch 2.13; at least 17)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim (graphs are verified either way)")
    p.add_argument("--labels", metavar="FILE", help="class names (one per line, or id,name CSV), copied into the bundle")
    p.add_argument("--video", metavar="PATH", help="video used for verification (default: the sample clip)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at DIR")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from videploy.cli.options import stdout_console
    from rich.panel import Panel
    from rich.table import Table

    from videploy.export.api import export_bundle, parse_batch, parse_overrides

    err = Console(stderr=True)
    out = stdout_console()
    overrides = parse_overrides(args.overrides)
    for key, value in (("num_frames", args.frames), ("image_size", args.image_size), ("num_classes", args.num_classes)):
        if value is not None:
            overrides[key] = value
    batch = parse_batch(args.batch)

    import logging

    # the library also logs its warnings (for Python callers); here they are shown once, as panels below
    logging.getLogger("videploy.export.api").setLevel(logging.ERROR)
    with err.status(f"exporting {args.model}") as status:

        def progress(msg: str) -> None:
            status.update(f"{msg} ...")
            err.log(msg)

        result = export_bundle(
            args.model,
            args.output,
            overrides=overrides,
            checkpoint=args.checkpoint,
            batch=batch,
            opset=args.opset,
            simplify=not args.no_simplify,
            labels=args.labels,
            overwrite=args.overwrite,
            video=args.video,
            progress=progress,
        )
    m = result.manifest
    for w in result.warnings:
        err.print(Panel(w, title="WARNING", style="bold red"))

    table = Table(title=f"verification: ONNX (onnxruntime) vs PyTorch — {result.report.inputs}")
    for col in ("graph.output", "worst call", "max abs", "max rel", "cosine", "top-1", "ok"):
        table.add_column(col)
    for r in result.report.worst():
        if r.exact:
            table.add_row(f"{r.graph}.{r.output}", r.call, "exact" if r.passed else f"{r.max_rel:.1%} differ", "", "", "", "yes" if r.passed else "NO")
        else:
            top1 = f"{r.top1:.0%}" if r.top1 is not None else ""
            table.add_row(f"{r.graph}.{r.output}", r.call, f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", f"{r.cosine:.7f}", top1, "yes" if r.passed else "NO")
    out.print(table)

    graphs = Table(title=f"bundle {result.bundle} ({m.model_name}, opset {m.opset})")
    for col in ("graph", "file", "size", "GFLOPs", "inputs", "outputs"):
        graphs.add_column(col)
    for g in m.graphs:
        size = (result.bundle / g.file).stat().st_size
        graphs.add_row(
            g.role,
            g.file,
            f"{size / 2**20:.1f} MiB",
            f"{g.gflops:.3f}",
            ", ".join(f"{t.name}{list(t.shape)}" for t in g.inputs),
            ", ".join(f"{t.name}{list(t.shape)}" for t in g.outputs),
        )
    out.print(graphs)
    times = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items() if v >= 0.05)
    out.print(f"exported in {result.seconds:.1f} s ({times})")
    b = m.batch
    out.print(f"batch range for engines: min {b.min} opt {b.opt} max {b.max}" + ("" if b.dynamic else " (fixed)"))
    out.print(f"next: videploy inspect {result.bundle} | videploy predict {result.bundle} VIDEO | videploy build {result.bundle} --precision fp16")
    sys.stdout.flush()
    return 0
