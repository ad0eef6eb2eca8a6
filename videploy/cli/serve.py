"""``videploy serve``: a bundle behind NVIDIA Triton Inference Server (HTTP, gRPC, metrics)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DESCRIPTION = """\
Serve an exported bundle on NVIDIA Triton Inference Server, through PyTriton (which ships the
server): HTTP and gRPC inference endpoints (KServe v2 protocol, any Triton client), Prometheus
metrics, and dynamic batching across requests. Answers are exactly 'videploy predict''s: the
runtime decodes and preprocesses every video and runs the bundle's graphs.

Each request carries ONE of these inputs (the model's Triton metadata lists them):
  video    BYTES [1]             the bytes of a video file (mp4, avi, mkv, webm, ...)
  frames   UINT8 [T, H, W, 3]    decoded RGB frames
and gets back top_indices, top_probabilities, top_labels (top-k), exit_step (AdaFocusV3's
exit, -1 otherwise), gflops (compute spent) and error (empty on success).

Batching: Triton queues requests for up to --max-queue-delay-ms and hands up to --max-batch of
them to the runtime at once; their videos are decoded in parallel and run in one batch.
AdaFocusV3 uses continuous batching inside that batch: a video that exits early frees its
local-encoder slot for the next video of the batch (set --max-batch above the bundle's batch
to give it videos to refill with). Requests arriving meanwhile form the next batch.

A bad request (not a video, wrong shape or dtype, larger than --max-upload-mb) gets an error
that says why; the other requests are served. Ctrl-C (SIGINT) or SIGTERM stops the server
cleanly.
"""

EPILOG = """\
examples:
  videploy serve vfn_t/                                   HTTP :8000, gRPC :8001, metrics :8002
  videploy serve ada/ --http-port 9000 --grpc-port 9001 --metrics-port 9002 --max-batch 16
  videploy serve vfn_t/ --host 0.0.0.0 --max-upload-mb 200 --top-k 3

client (pip install 'tritonclient[http]'):
  import numpy as np, tritonclient.http as httpclient
  c = httpclient.InferenceServerClient("127.0.0.1:8000")
  x = httpclient.InferInput("video", [1, 1], "BYTES")
  x.set_data_from_numpy(np.array([[open("walk.mp4", "rb").read()]], dtype=object))
  r = c.infer("MODEL", [x])     # MODEL: the bundle's model name (printed at start)
  print(r.as_numpy("top_labels"), r.as_numpy("top_probabilities"))

needs: pip install 'videploy[serve]' (PyTriton + tritonclient; Linux, a Python with a shared
libpython -- videploy puts this interpreter's libpython first on the server's library path).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="serve a bundle on Triton Inference Server (HTTP/gRPC, dynamic batching)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by 'videploy export'")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--http-port", type=int, default=8000, metavar="N", help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, metavar="N", help="gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=int, default=8002, metavar="N", help="Prometheus metrics port (default 8002)")
    p.add_argument("--model-name", metavar="NAME", help="Triton model name (default: the bundle's model name)")
    p.add_argument("--max-batch", type=int, metavar="N", help="videos per Triton batch (default: the bundle's maximum batch)")
    p.add_argument("--max-queue-delay-ms", type=float, default=5.0, metavar="MS", help="how long Triton waits to fill a batch (default 5)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes per answer (default 5)")
    p.add_argument("--max-upload-mb", type=float, default=64.0, metavar="MB", help="largest video or frame array a request may carry (default 64)")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt"], help="runtime backend (default onnxruntime)")
    p.add_argument("--device", metavar="DEV", help="cpu (default), cuda, or tensorrt (onnxruntime's TensorRT provider); the tensorrt backend always uses cuda")
    p.add_argument("--threads", type=int, metavar="N", help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    p.add_argument("--decode-threads", type=int, default=4, metavar="N", help="videos decoded in parallel within a batch (default 4)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from videploy.errors import VideployError
    from videploy.serve.triton import Endpoints, ServeOptions, serve

    for flag in ("http_port", "grpc_port", "metrics_port"):
        port = getattr(args, flag)
        if not 0 < port < 65536:
            raise VideployError(f"--{flag.replace('_', '-')} must be a TCP port between 1 and 65535, got {port}")
    if args.threads is not None and args.backend != "onnxruntime":
        raise VideployError("--threads applies to the onnxruntime backend")
    options = ServeOptions(
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        model_name=args.model_name,
        max_batch=args.max_batch,
        max_queue_delay_ms=args.max_queue_delay_ms,
        top_k=args.top_k,
        max_upload_mb=args.max_upload_mb,
        backend=args.backend,
        device=args.device or ("cuda" if args.backend == "tensorrt" else "cpu"),
        threads=args.threads,
        decode_threads=args.decode_threads,
    )

    def ready(e: Endpoints) -> None:
        print(
            f"videploy serve: model {e.model_name!r} ready -- HTTP {e.http}, gRPC {e.grpc}, metrics {e.metrics} "
            "(Ctrl-C or SIGTERM stops)",
            file=sys.stderr,
            flush=True,
        )

    serve(args.bundle, options, on_ready=ready)
    print("videploy serve: stopped", file=sys.stderr, flush=True)
    return 0
