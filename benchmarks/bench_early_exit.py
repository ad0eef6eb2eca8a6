"""AdaFocusV3 on a stream of videos: early exit vs all steps, static vs continuous batching.

    python benchmarks/bench_early_exit.py                    # small config, ~1-2 min on 2 cores
    python benchmarks/bench_early_exit.py --full-size        # adafocusv3_mbv2_r50 at its real size (slow)
    python benchmarks/bench_early_exit.py --bundle ada/ --budgets 0.3,0.6 --videos 32

The model is exported with random weights (or ``--bundle`` gives an exported AdaFocusV3 bundle,
e.g. one with a real checkpoint and calibrated thresholds). A stream of ``--videos`` clips is cut
from the sample video (or ``--video`` files) and decoded once, so the timings below exclude
decoding. For each threshold setting:

* ``equal exits``: thresholds fitted on the stream so that an equal share of clips leaves at every
  exit (exercises every exit);
* ``budget f``: thresholds for an average of ``glance + f * (full - glance)`` GFLOPs per video
  (paper Eq. 7), fitted on the stream itself -- a demonstration, not a calibration;
* ``bundle``: the bundle's own thresholds, when it has them.

it reports the GFLOPs per video from the runtime's accounting and the measured time of the
stream with early exit vs all steps (``-inf`` thresholds), and the throughput of static vs
continuous batching with the local-encoder occupancy (rows per call). Everything measured side
by side, interleaved, in one run. With random weights the exits (and so the savings) only
illustrate the mechanism.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FULL, export, header, log, markdown_table
from videploy import jsonsafe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-size", action="store_true", help=f"export {FULL['adafocusv3']} at its real size (slow)")
    p.add_argument("--bundle", metavar="DIR", help="an exported AdaFocusV3 bundle to use instead of exporting one")
    p.add_argument("--video", action="append", metavar="FILE", help="video files to cut clips from (default: the sample video)")
    p.add_argument("--videos", type=int, default=8, help="clips in the stream (default 8)")
    p.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    p.add_argument("--budgets", default="0.5", help="budgets as fractions of the way from glance-only to full cost (default 0.5; '' for none)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of the stream per case (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per case (default 1)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt"], help="backend to run on (default onnxruntime)")
    p.add_argument("--json", metavar="FILE", help="also write every comparison (all samples) to FILE")
    args = p.parse_args(argv)

    from videploy import runtime
    from videploy.bench.adaptive import bench_batching, bench_early_exit
    from videploy.calibration.fit_on_videos import ExitThresholds, resolve_exit_thresholds
    from videploy.bench.inputs import clip_stream
    from videploy.runtime.samples import sample_video_path

    fractions = [float(f) for f in args.budgets.split(",") if f.strip()]
    with tempfile.TemporaryDirectory(prefix="videploy-bench-") as tmp:
        bundle = Path(args.bundle) if args.bundle else export("adafocusv3", Path(tmp) / "ada", args.full_size, batch=f"1:{args.batch}:{max(8, args.batch)}")
        options = {"threads": args.threads} if args.backend == "onnxruntime" else {}
        rec = runtime.load(bundle, backend=args.backend, device="cpu" if args.backend == "onnxruntime" else "cuda", **options)
        m = rec.manifest
        if m.early_exit is None:
            p.error(f"{bundle} is a {m.family} bundle, not AdaFocusV3")
        ee = m.early_exit
        files = args.video or [str(sample_video_path())]
        log(f"decoding {args.videos} clips from {', '.join(Path(f).name for f in files)}")
        stream = clip_stream(files, args.videos, m.preprocessing)

        settings: list[tuple[str, ExitThresholds]] = [("equal exits", resolve_exit_thresholds(rec, stream, batch_size=args.batch, default="equal exits"))]
        for f in fractions:
            budget = ee.exit_gflops[0] + f * (ee.exit_gflops[-1] - ee.exit_gflops[0])
            settings.append((f"budget {f:g} ({budget:.3g} GFLOPs)", resolve_exit_thresholds(rec, stream, budget=budget, batch_size=args.batch)))
        if ee.thresholds is not None:
            settings.append(("bundle", resolve_exit_thresholds(rec, stream, batch_size=args.batch)))

        rows, dump = [], []
        for label, eta in settings:
            log(f"{label}: early exit vs all steps")
            e = bench_early_exit(rec, stream, eta.values, args.batch, args.repeat, args.warmup, time.perf_counter)
            log(f"{label}: static vs continuous batching")
            b = bench_batching(rec, stream, eta.values, args.batch, args.repeat, args.warmup, time.perf_counter)
            st, co = b.accounting["static"], b.accounting["continuous"]
            early = e.accounting["early exit"]
            rows.append([
                label,
                "/".join(map(str, early.exit_counts)),
                f"{early.gflops_per_video:.3f} of {ee.exit_gflops[-1]:.3f}",
                f"{e.gflops_ratio:.2f}",
                f"{e.timings['early exit'].stats.median / e.timings['all steps'].stats.median:.2f}",
                f"{b.timings['static'].throughput:.2f}",
                f"{b.timings['continuous'].throughput:.2f}",
                f"{b.speedup:.2f}x",
                f"{st.local_rows_per_call:.2f} -> {co.local_rows_per_call:.2f}",
                "yes" if b.identical_results else "NO",
            ])
            dump.append({"setting": label, "thresholds": eta.to_dict(), "early_exit": e.to_dict(), "batching": b.to_dict()})
        rec.close()

    lines = header(f"AdaFocusV3 early exit and batching: {m.model_name} on {args.backend} ({'random weights' if m.weights is None else 'checkpoint ' + str(m.weights.get('file'))})")
    lines += [
        f"{args.videos} clips, batch {args.batch}, {args.threads} thread(s); median of {args.repeat} interleaved runs of the stream after {args.warmup} warm-up;",
        f"exit GFLOPs (glance first): {', '.join(f'{x:.3f}' for x in ee.exit_gflops)}; all-steps time ratio base = the stream with -inf thresholds",
        "",
    ]
    lines += markdown_table(
        ["thresholds", "exits", "GFLOPs/video", "GFLOPs ratio", "time ratio", "static vid/s", "continuous vid/s", "cont/static", "local rows/call", "same results"],
        rows,
    )
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(jsonsafe.dumps(dump, indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
