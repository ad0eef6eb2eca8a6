"""onnxruntime vs the PyTorch reference, per model family and graph: a table of speed ratios.

    python benchmarks/bench_backends.py                      # small configs, ~1-2 min on 2 cores
    python benchmarks/bench_backends.py --full-size          # the zoo sizes (slow: minutes per family)
    python benchmarks/bench_backends.py --families stam --batch 1,8 --repeat 20

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
            log(f"timing {family}: onnxruntime vs torch, batches {batches}")
            r = bench_bundle(bundle, backends=("onnxruntime", "torch"), batches=batches, repeat=args.repeat, warmup=args.warmup, threads=args.threads, num_videos=max(batches), adaptive=False, progress=log)
            reports.append(r.to_dict())
            for g in r.graphs:
                ort, ref = g.timings.get("onnxruntime"), g.timings.get("torch")
                rows.append([
                    family,
                    r.manifest.model_name,
                    g.role,
                    str(g.batch),
                    f"{g.gflops_per_row:.3g}",
                    ms(ort.stats.median) if ort else "-",
                    ms(ort.stats.iqr) if ort else "-",
                    ms(ref.stats.median) if ref else "-",
                    ms(ref.stats.iqr) if ref else "-",
                    f"{g.speedup('onnxruntime'):.2f}x" if ort and ref else "-",
                ])
            skipped = [b for b in r.backends if b["status"] != "ok"]
            for b in skipped:
                log(f"{b['name']} skipped: {b['reason']}")
    lines = header(f"onnxruntime vs PyTorch reference ({'full size' if args.full_size else 'small configs'}, random weights)")
    lines += [f"median of {args.repeat} interleaved calls after {args.warmup} warm-up, {args.threads} thread(s) each; speedup = torch median / onnxruntime median", ""]
    lines += markdown_table(["family", "model", "graph", "batch", "GFLOPs/row", "ort ms", "ort IQR", "torch ms", "torch IQR", "ort speedup"], rows)
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(jsonsafe.dumps(reports, indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
