"""The ``videploy`` command line. One module per subcommand under ``videploy/cli/``.

Each subcommand module defines ``add_parser(subparsers)`` that registers its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit code). Heavy imports
(torch, onnxruntime) happen inside ``func`` so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from videploy import __version__
from videploy.errors import VideployError

# Listing order in --help; each name is a module videploy/cli/<name>.py ('-' written '_').
COMMANDS = ("demo", "models", "export", "inspect", "quantize", "build", "predict", "predict-dataset", "calibrate-exits", "bench", "serve", "dataset", "train")

EPILOG = """\
typical flow:
  videploy models                                   list the zoo (params, GFLOPs, input layout)
  videploy export video_focalnet_tiny -o vfn/ --checkpoint ckpt.pth
                                                    PyTorch -> ONNX bundle, verified with onnxruntime
  videploy inspect vfn/                             what a bundle holds
  videploy predict vfn/ video.mp4 --labels k400.txt run it on real videos (no torch needed)
  videploy calibrate-exits ada/ --videos val.csv --budget 8.5
                                                    AdaFocusV3 exit thresholds from labelled videos
  videploy predict-dataset vfn/ clips/ -o preds/   a whole collection on Ray Data, into Parquet (resumable)
  videploy quantize vfn/ --videos clips/ -o vfn8/   INT8 Q/DQ graphs calibrated on videos, with an agreement report
  videploy build vfn/ --precision fp16              TensorRT engines (needs TensorRT + GPU)
  videploy bench vfn/ --backend onnxruntime,torch   latency / throughput, measured side by side
  videploy serve vfn/                               Triton Inference Server: HTTP/gRPC, dynamic batching
  videploy demo                                     all of it on a small model and a generated video
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videploy",
        description="Export, build and run efficient video-recognition models (Video-FocalNet, STAM, AdaFocusV3).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"videploy {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"videploy.cli.{name.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from videploy.cli.options import join_dash_values

    parser = build_parser()
    args = parser.parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VideployError as exc:
        if args.verbose:
            raise
        print(f"videploy {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"videploy {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
