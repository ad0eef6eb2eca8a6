"""Video-FocalNet's temporal convolutions: the export layout (MatMuls over shifted frames) vs Conv1d.

    python benchmarks/bench_vfn_temporal.py                 # video_focalnet_tiny at full size, batch 1
    python benchmarks/bench_vfn_temporal.py --batch 4 --repeat 7

The export writes the temporal path as MatMuls in a channels-last layout (``models/video_focalnet.py``,
``_temporal_modulator_channels_last``); the eager PyTorch path keeps the official Conv1d. This exports
the same random-weight model both ways (the Conv1d graph by switching the export layout off) and times
the two ONNX graphs in onnxruntime, interleaved, on the same input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, log, markdown_table, ms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="video_focalnet_tiny", help="zoo name (default video_focalnet_tiny)")
    p.add_argument("--batch", type=int, default=1, help="videos per call (default 1)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per graph (default 5)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    args = p.parse_args(argv)

    import numpy as np
    import onnxruntime as ort
    import torch

    import videploy.models.video_focalnet as vfn
    from videploy.bench.timing import Case, measure_interleaved
    from videploy.export.onnx_export import export_graph
    from videploy.models import create
    from videploy.runtime.backends.onnxruntime import session_options

    torch.manual_seed(0)
    model = create(args.model).eval()
    graph = model.deploy_graphs()["main"]
    protos = {}
    log("exporting with the MatMul layout (what videploy export writes)")
    protos["MatMul layout (export)"] = export_graph(graph, "main", None)
    original = vfn.exporting
    vfn.exporting = lambda: False  # the official Conv1d path, as earlier exports wrote it
    try:
        log("exporting with the Conv1d layout")
        protos["Conv1d layout (before)"] = export_graph(graph, "main", None)
    finally:
        vfn.exporting = original
    opts = session_options(ort, args.threads)  # the runtime's own options
    sessions = {k: ort.InferenceSession(v.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]) for k, v in protos.items()}
    x = torch.randn(args.batch, *model.example_inputs(1)[0].shape[1:]).numpy()
    outs = [s.run(None, {"video": x})[0] for s in sessions.values()]
    diff = float(np.abs(outs[0] - outs[1]).max())
    cases = [Case(k, (lambda s=s: s.run(None, {"video": x})), items=args.batch) for k, s in sessions.items()]
    t = measure_interleaved(cases, repeat=args.repeat, warmup=1, clock=time.perf_counter)
    a, b = (t[k].stats.median for k in protos)
    lines = header(f"{args.model}: temporal convolutions as MatMuls vs Conv1d (onnxruntime, batch {args.batch}, {args.threads} threads)")
    lines += markdown_table(["graph", "median ms", "p90 ms"], [[k, ms(v.stats.median), ms(v.stats.p90)] for k, v in t.items()])
    lines += ["", f"MatMul layout is {b / a:.2f}x the speed of the Conv1d layout; max |logits difference| {diff:.1e}"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
