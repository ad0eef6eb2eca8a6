"""``videploy build``: TensorRT engines for every graph of a bundle."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Build one TensorRT engine per graph of a bundle, on the machine that will run it (engines are
specific to the GPU and the TensorRT version), and record them in the bundle's manifest.

The optimization profile comes from the manifest: the batch dimension spans the export's
--batch range (min/opt/max), every other dimension is fixed. A timing cache is kept in the
bundle (timing.cache) so a rebuild is fast; --timing-cache FILE shares one across bundles.

Precision:
  fp32  exact (TF32 disabled on TensorRT 10).
  fp16  TensorRT 11 builds strongly typed networks only, so the graph is converted to fp16
        first (inputs/outputs stay float32; saved as <role>.fp16.onnx); TensorRT 10 uses the
        FP16 builder flag on the fp32 graph.
  int8  needs a quantized graph with explicit Q/DQ nodes (variants["int8"]), which INT8
        calibration produces; implicit calibration no longer exists in TensorRT 11.

Needs the tensorrt Python package and an NVIDIA GPU. --dry-run prints the plan without either,
and runs the plan's fp16 conversions in memory, so a graph that cannot convert fails there.
"""

EPILOG = """\
examples:
  videploy build vfn_t/ --precision fp16
  videploy build ada/ --precision fp32 --workspace-gb 4 --timing-cache ~/.cache/videploy/h100.cache
  videploy build stam/ --precision fp16 --dry-run --tensorrt-version 10.3.0   plan for a Jetson, no GPU needed
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "build",
        help="TensorRT engines for a bundle (needs TensorRT + GPU)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="DIR", help="bundle directory written by 'videploy export'")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16", help="engine precision (default fp16)")
    p.add_argument("--workspace-gb", type=float, metavar="GB", help="builder workspace limit (default: TensorRT's, all device memory)")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache to start from and update (shared across bundles)")
    p.add_argument("--dry-run", action="store_true", help="print the build plan (profiles, flags, files), check its fp16 conversions, and stop")
    p.add_argument("--tensorrt-version", metavar="X.Y.Z", help="with --dry-run: plan for this TensorRT version instead of the installed one")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from videploy.bundle.manifest import read_manifest
    from videploy.errors import VideployError
    from videploy.export.tensorrt_build import build_engines, check_conversions, plan_build
    from videploy.optional import require

    out = Console(soft_wrap=True)
    err = Console(stderr=True)
    if args.dry_run:
        manifest = read_manifest(args.bundle)
        version = args.tensorrt_version or str(require("tensorrt", "planning a TensorRT build (or pass --tensorrt-version)").__version__)
        plan = plan_build(manifest, args.precision, version, args.workspace_gb, args.timing_cache)
        for line in plan.describe():
            out.print(line, highlight=False)
        for line in check_conversions(args.bundle, plan):
            out.print(line, highlight=False)
        return 0
    if args.tensorrt_version:
        raise VideployError("--tensorrt-version only applies to --dry-run; a real build uses the installed TensorRT")
    with err.status(f"building {args.precision} engines for {args.bundle}") as status:

        def progress(msg: str) -> None:
            status.update(f"{msg} ...")
            err.log(msg)

        manifest, plan = build_engines(args.bundle, args.precision, args.workspace_gb, args.timing_cache, progress)
    for line in plan.describe():
        out.print(line, highlight=False)
    for g in manifest.graphs:
        out.print(f"engine '{g.role}': {g.engines[args.precision]}", highlight=False)
    out.print(f"next: videploy predict {args.bundle} VIDEO (with the TensorRT backend)", highlight=False)
    return 0
