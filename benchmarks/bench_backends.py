"""Every CPU backend against a fair PyTorch baseline, per model family and graph: speed ratios.

    python benchmarks/bench_backends.py                      # small configs, ~1-2 min on 2 cores
    python benchmarks/bench_backends.py --full-size --batch 1,8 --threads 2   # the zoo sizes (minutes per family)
    python benchmarks/bench_backends.py --families stam --batch 1,8 --repeat 20 --compile

The PyTorch baseline is what a PyTorch user would run: eval mode, ``torch.inference_mode``, the
same threads, in both memory formats (``torch`` contiguous, ``torch:channels_last``) and, with
``--compile``, ``torch.compile`` too; the ratio is against the BEST of them. The other backends
are onnxruntime and OpenVINO (fp32 forced) on the same ONNX graphs.

Each family is exported (random weights, seed 0) into a temporary directory, then every graph is
timed on both backends, interleaved, on real decoded frames (``videploy.bench.bench_bundle`` with
the stream benchmarks off; ``bench_early_exit.py`` does those). Prints a Markdown table with the
machine and the command, ready to paste into notes; ``--json FILE`` keeps every sample.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FULL, SMALL, export, header, log, markdown_table, ms
from videploy import jsonsafe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default=",".join(SMALL), help=f"comma-separated, from {', '.join(SMALL)} (default: all)")
    p.add_argument("--full-size", action="store_true", help=f"export the zoo models at their real size ({', '.join(FULL.values())}); slow")
    p.add_argument("--batch", default="1,4", help="batch sizes (default 1,4)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per case (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per case (default 1)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for both backends (default 1: steadier on a shared machine)")
    p.add_argument("--keep", metavar="DIR", help="export into DIR and keep the bundles (default: a temporary directory)")
    p.add_argument("--json", metavar="FILE", help="also write every report (all samples) to FILE")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile; needs a C++ compiler)")
    p.add_argument("--backends", default="onnxruntime,openvino", help="non-PyTorch backends to time (default onnxruntime,openvino)")
    args = p.parse_args(argv)

    from videploy.bench.bundle import bench_bundle

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in SMALL]
    if unknown:
        p.error(f"unknown families {unknown}; choose from {', '.join(SMALL)}")
    batches = [int(b) for b in args.batch.split(",")]
    rows, reports = [], []
    with tempfile.TemporaryDirectory(prefix="videploy-bench-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for family in families:
            bundle = root / family
            if not (bundle / "manifest.json").is_file():
                export(family, bundle, args.full_size, batch=f"1:{max(batches)}:{max(8, max(batches))}")
            torch_names = ["torch", "torch:channels_last"] + (["torch:compile"] if args.compile else [])
            names = [b.strip() for b in args.backends.split(",") if b.strip()] + torch_names
            log(f"timing {family}: {', '.join(names)}, batches {batches}")
            r = bench_bundle(
                bundle, backends=names, batches=batches, repeat=args.repeat, warmup=args.warmup, threads=args.threads, num_videos=max(batches),
                adaptive=False, end_to_end=False, progress=log,
            )
            reports.append(r.to_dict())
            for g in r.graphs + r.whole_model:  # AdaFocusV3: also the whole chain, every step, through the runtime
                torch_ran = {n: g.timings[n].stats.median for n in torch_names if n in g.timings}
                best_torch = min(torch_ran, key=torch_ran.get) if torch_ran else None
                for n, t in g.timings.items():
                    if n in torch_names:
                        continue
                    rows.append([
                        family,
                        r.manifest.model_name,
                        g.role,
                        str(g.batch),
                        n,
                        ms(t.stats.median),
                        ", ".join(f"{k} {ms(v)}" for k, v in torch_ran.items()) or "-",
                        f"{torch_ran[best_torch] / t.stats.median:.2f}x vs {best_torch}" if best_torch else "-",
                    ])
            skipped = [b for b in r.backends if b["status"] != "ok"]
            for b in skipped:
                log(f"{b['name']} skipped: {b['reason']}")
    lines = header(f"CPU backends vs the best PyTorch eager baseline ({'full size' if args.full_size else 'small configs'}, random weights)")
    lines += [f"median of {args.repeat} interleaved calls after {args.warmup} warm-up, {args.threads} thread(s) each; speedup = best PyTorch median / backend median", ""]
    lines += markdown_table(["family", "model", "graph", "batch", "backend", "ms", "PyTorch ms (eager variants)", "speedup"], rows)
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(jsonsafe.dumps(reports, indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
