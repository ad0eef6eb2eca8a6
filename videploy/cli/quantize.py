"""``videploy quantize``: INT8 graph variants of a bundle, calibrated on real videos."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Quantize a bundle's graphs to INT8 and write a NEW bundle: a copy of BUNDLE whose manifest lists,
for every graph, explicitly quantized variants (QuantizeLinear/DequantizeLinear nodes):

  int8      symmetric int8 (zero point 0), per-channel weights, Q/DQ in front of Conv/MatMul/Gemm:
            the only INT8 form TensorRT 11 accepts (TensorRT 10 builds it too);
            run it with  videploy build OUT --precision int8  (or --precision int8 in predict/bench)
  int8-cpu  uint8 activations, int8 per-channel weights, int32 bias: what onnxruntime's CPU
            kernels run fastest;  videploy predict OUT VIDEO --precision int8-cpu

How (ONNX Runtime's quantization tools, not hand-written statistics):
  1. the videos are decoded, sampled and preprocessed exactly as 'videploy predict' does, a few
     clips per video (--clips-per-video, at most --max-clips); every --holdout-every-th clip is
     held out for the agreement report and never used for calibration;
  2. the FP32 graphs run on the calibration clips as the runtime runs them; what each graph
     receives is recorded (AdaFocusV3: the local encoder sees the crops its policy chose);
  3. ranges per graph with --method (entropy, percentile or minmax);
  4. sensitivity: each graph is quantized whole and compared with FP32 on its calibration inputs;
     if its lowest output cosine is below --min-cosine, its layers are quantized one group at a
     time (first layer, body blocks, last layer) and the worst groups stay in float;
     AdaFocusV3: then the whole chain runs on --chain-clips calibration clips with the INT8
     graphs; a graph that, quantized alone, moves the chain's per-exit logits below
     --min-chain-cosine or the chosen cubes (boxes by > 1 px) for more than 1 - --min-cubes of
     the clips stays wholly in float (a moved crop changes every later exit and the exit step);
  5. agreement on the held-out clips, per graph / output / exit: cosine similarity and top-1
     agreement of INT8 vs FP32 (AdaFocusV3: also how often the chosen cubes and the exit step
     change), stored in the manifest, printed here and shown by 'videploy inspect'.

Recorded inputs (and the held-out clips) and calibration ranges are cached under --cache-dir,
keyed by the graphs' and the videos' hashes: trying another --method decodes nothing again.
"""

EPILOG = """\
examples:
  videploy quantize ada/ --videos val_videos/ -o ada_int8/
  videploy quantize vfn_t/ --videos list.csv --method percentile -o vfn_t_int8/
  videploy quantize ada/ --videos a.mp4 b.mp4 --target int8-cpu --keep-float policy -o ada_cpu/
  videploy inspect ada_int8/                     the agreement report and what stayed in float
  videploy bench ada_int8/ --precision int8      INT8 next to FP32
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from videploy.cli.options import verbose_parent

    p = subparsers.add_parser(
        "quantize",
        help="INT8 (Q/DQ) variants of a bundle's graphs, calibrated on videos",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    p.add_argument("bundle", metavar="BUNDLE", help="FP32 bundle directory written by 'videploy export'")
    p.add_argument("--videos", nargs="+", required=True, metavar="SRC", help="calibration videos: files, directories (searched recursively) or CSV lists (first column: path)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="new bundle directory to write")
    p.add_argument("--method", choices=("entropy", "percentile", "minmax"), default="entropy", help="activation range calibration (default entropy)")
    p.add_argument("--target", action="append", choices=("int8", "int8-cpu"), help="variant(s) to write (repeatable; default both)")
    p.add_argument("--clips-per-video", type=int, default=4, metavar="N", help="clips sampled per video (default 4)")
    p.add_argument("--max-clips", type=int, default=64, metavar="N", help="stop decoding after N clips in all (default 64)")
    p.add_argument("--holdout-every", type=int, default=4, metavar="N", help="hold out every N-th clip for the agreement report (default 4; 0 = none)")
    p.add_argument("--batch-size", type=int, metavar="N", help="rows per calibration call (default: 8 or the bundle's maximum)")
    p.add_argument("--min-cosine", type=float, default=0.995, metavar="C", help="per graph: lowest output cosine vs FP32 on calibration inputs before layers go back to float (default 0.995)")
    p.add_argument("--min-chain-cosine", type=float, default=0.995, metavar="C", help="AdaFocusV3: lowest per-exit mean logit cosine of the whole INT8 chain on calibration clips (default 0.995)")
    p.add_argument("--min-cubes", type=float, default=0.9, metavar="F", help="AdaFocusV3: share of calibration clips whose chosen cubes must stay put (default 0.9)")
    p.add_argument("--chain-clips", type=int, default=32, metavar="N", help="AdaFocusV3: calibration clips the chain check runs (default 32; 0 = no chain check)")
    p.add_argument("--keep-float", action="append", default=[], metavar="GRAPH", help="leave this graph (role, e.g. policy) in float (repeatable)")
    p.add_argument("--no-sensitivity", action="store_true", help="quantize every layer without measuring which hurt")
    p.add_argument("--cache-dir", metavar="DIR", help="calibration cache (default $VIDEPLOY_CACHE, else ~/.cache/videploy)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at OUT")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from videploy.calibration.int8 import QuantizeOptions, quantize_bundle

    out = Console(soft_wrap=True)
    err = Console(stderr=True)
    options = QuantizeOptions(
        method=args.method,
        targets=tuple(dict.fromkeys(args.target or ("int8", "int8-cpu"))),
        clips_per_video=args.clips_per_video,
        max_clips=args.max_clips,
        holdout_every=args.holdout_every,
        batch_size=args.batch_size,
        sensitivity=not args.no_sensitivity,
        min_score=args.min_cosine,
        min_chain_score=args.min_chain_cosine,
        min_cube_agreement=args.min_cubes,
        chain_clips=args.chain_clips,
        keep_float=tuple(args.keep_float),
        cache_dir=args.cache_dir,
        progress=err.is_terminal,
    )
    with err.status(f"quantizing {args.bundle} ({args.method} calibration)"):
        result = quantize_bundle(args.bundle, args.videos, args.output, options, overwrite=args.overwrite)
    for skipped in result.skipped:
        err.print(f"[yellow]skipped[/] {skipped}", highlight=False)
    if result.inputs_cached:
        out.print("calibration inputs: from the cache (no video decoded)", highlight=False)
    for line in float_lines(result.bundle.manifest.provenance.get("int8", {})):
        out.print(line, highlight=False)
    for report in result.agreement.values():
        for line in report.lines():
            out.print(line, highlight=False)
    if not result.agreement:
        out.print("[yellow]no held-out clips: no agreement report (use --holdout-every N with enough clips)[/]")
    out.print(f"wrote {args.output}: variants {', '.join(options.targets)}; next: videploy inspect {args.output}", highlight=False)
    return 0


def float_lines(record: dict) -> list[str]:
    """What stayed in float and why (from the manifest's ``provenance["int8"]``)."""
    rows = record.get("float") or []
    if not rows:
        return ["stayed in float: nothing (every graph quantized)"]
    lines = []
    for r in rows:
        what = "the whole graph" if r.get("whole_graph") else ", ".join(r.get("groups", []))
        lines.append(f"stayed in float in graph '{r['graph']}': {what}; {r.get('reason', '')}")
    return lines
