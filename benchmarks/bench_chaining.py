"""The cost of running AdaFocusV3 as three graphs: split chain vs one monolithic graph, same backend.

    python benchmarks/bench_chaining.py                       # small config
    python benchmarks/bench_chaining.py --full-size --batch 8 --threads 2

videploy deploys AdaFocusV3 as glance / policy / local-step graphs so that videos can stop early.
Here every step is forced, so both sides do exactly the same computation: the split chain as the
runtime runs it (onnxruntime, host glue between calls: gathering the chosen frames, carrying the
states) against one ONNX graph of glance -> policy -> every local step exported for this benchmark
from the same weights. Overhead = split / monolithic - 1, interleaved in one run. The split chain
also runs with plain calls instead of I/O binding, to show what binding does on the CPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FULL, SMALL, export, header, log, markdown_table, ms


def monolithic_module(model):
    """glance -> policy -> every local step, as one torch module (the same deploy graphs, chained in-graph)."""
    import torch

    graphs = model.deploy_graphs()
    ee = model.early_exit()

    class Monolithic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.glance, self.policy, self.local = graphs["glance"], graphs["policy"], graphs["local"]

        def forward(self, video):
            b = video.shape[0]
            logits, _, global_state, featmap, global_feat = self.glance(video[:, list(ee.glance_indices)])
            idx, actions, _ = self.policy(featmap, global_feat)
            state = torch.zeros(b, ee.state_size, dtype=video.dtype)
            rows = torch.arange(b).unsqueeze(1)
            for t in range(ee.num_steps):
                frames = video[rows, idx[:, t]]
                step = torch.full((b,), t, dtype=torch.int64)
                logits, _, state = self.local(frames, actions[:, t], step, state, global_state)
            return logits

    return Monolithic().eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-size", action="store_true", help=f"{FULL['adafocusv3']} at its real size (slow)")
    p.add_argument("--batch", type=int, default=8, help="videos per call (default 8)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per case (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per case (default 1)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    args = p.parse_args(argv)

    import numpy as np
    import onnxruntime as ort
    import torch

    from videploy import runtime
    from videploy.bench.timing import Case, measure_interleaved
    from videploy.export.onnx_export import export_graph
    from videploy.export.verify import batch_of, real_views
    from videploy.runtime.backends.onnxruntime import session_options
    from videploy.models import create

    name, overrides = (FULL["adafocusv3"], None) if args.full_size else SMALL["adafocusv3"]
    with tempfile.TemporaryDirectory(prefix="videploy-chain-") as tmp:
        bundle = export("adafocusv3", Path(tmp) / "ada", args.full_size, batch=f"1:{args.batch}:{max(8, args.batch)}")
        torch.manual_seed(0)  # export builds its random weights from seed 0
        model = create(name, **(overrides or {})).eval()
        mono = monolithic_module(model)
        view, _ = real_views(model.preprocessing())
        video = batch_of(view, args.batch)
        log("exporting the monolithic graph (every step forced) with the same weights")
        mono.input_names, mono.output_names = ("video",), ("logits",)
        mono.example_inputs = lambda batch_size=1: (torch.from_numpy(batch_of(view, batch_size)),)
        proto = export_graph(mono, "monolithic", None)
        # the same session options as the runtime's (threads, no spinning after a run)
        session = ort.InferenceSession(proto.SerializeToString(), sess_options=session_options(ort, args.threads), providers=["CPUExecutionProvider"])
        rec = runtime.load(bundle, threads=args.threads, decode_workers=0)
        # the same chain with plain calls: every output copied out to numpy, fed back in
        plain = runtime.load(bundle, threads=args.threads, decode_workers=0, io_binding=False)
        ee = rec.manifest.early_exit
        never = [-math.inf] * (ee.num_steps + 1)
        videos = list(video)
        split = rec.adaptive.run(videos, thresholds=never, batch_size=args.batch)
        plain.adaptive.run(videos[:1], thresholds=never, batch_size=args.batch)  # sessions load before timing
        (mono_logits,) = session.run(None, {"video": video})
        worst = float(np.abs(np.stack([o.logits for o in split]) - mono_logits).max())
        log(f"same computation: max |split - monolithic| logits = {worst:.2e}")
        cases = [
            Case("split (runtime chain)", lambda: rec.adaptive.run(videos, thresholds=never, batch_size=args.batch), items=args.batch),
            Case("split, plain calls", lambda: plain.adaptive.run(videos, thresholds=never, batch_size=args.batch), items=args.batch),
            Case("monolithic graph", lambda: session.run(None, {"video": video}), items=args.batch),
        ]
        t = measure_interleaved(cases, repeat=args.repeat, warmup=args.warmup, clock=time.perf_counter)
    s, m = t["split (runtime chain)"].stats.median, t["monolithic graph"].stats.median
    lines = header(f"AdaFocusV3 chaining overhead ({'full size' if args.full_size else 'small config'}, every step forced, batch {args.batch})")
    lines += markdown_table(
        ["case", "median ms", "p90 ms", "videos/s"],
        [[n, ms(x.stats.median), ms(x.stats.p90), f"{args.batch / x.stats.median:.2f}"] for n, x in t.items()],
    )
    lines += ["", f"overhead of the split chain: {s / m - 1:+.1%} (target <= 3% at batch 8); max |logits difference| {worst:.1e}"]
    lines += [f"plain calls instead of I/O binding: {t['split, plain calls'].stats.median / s - 1:+.1%}"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
