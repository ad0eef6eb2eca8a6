"""predict-dataset on Ray Data vs plain ``videploy predict`` on the same files; 1 vs 2 inference actors.

    python benchmarks/bench_predict_dataset.py                      # small Video-FocalNet, 32 videos, ~2-3 min on 2 cores
    python benchmarks/bench_predict_dataset.py --videos 64 --repeat 2
    python benchmarks/bench_predict_dataset.py --bundle vfn/ --video-dir clips/ --num-cpus 8 --actors 1,2,4

Every case is a fresh command in a subprocess, as a user runs it, over the same files:

* ``predict``: ``videploy predict BUNDLE FILES... --json --threads 1`` (one process: decode, then
  predict, video after video);
* ``predict-dataset, N actors``: ``videploy predict-dataset BUNDLE DIR -o OUT --actors N`` on a
  local Ray instance of ``--num-cpus`` CPUs (decode tasks and N single-threaded actors), into a
  fresh OUT each time.

Reported per case: the command's wall time and videos/s over it (start-up included: Python
imports, Ray's start, actor creation, bundle loading); the start-up alone (predict: a 1-video
run; predict-dataset: until its first result, from its summary); and the steady throughput
(predict: (N-1) / (wall N - wall 1); predict-dataset: the middle half of the rows over the time
they took, from the rows' ``finished_at``, so start-up and tail are left out). The ratio predict-dataset /
predict on one machine is the engine's cost there; 1 -> 2 actors shows how inference scales
when CPUs are free for it. The cases are interleaved (round 1 runs each once, then round 2, ...)
so a busy period hits all alike. Videos are copies of one clip (the sample video by default), so
decoding cost is the same for every file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from videploy import jsonsafe
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FULL, SMALL, export, header, log, markdown_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="video_focalnet", choices=sorted(SMALL), help="model family to export (default video_focalnet)")
    p.add_argument("--full-size", action="store_true", help=f"export the family's zoo size ({', '.join(FULL.values())}; slow)")
    p.add_argument("--overrides", metavar="JSON", help="configuration overrides (official keyword names) instead of the small config, e.g. '{\"img_size\": 112}'")
    p.add_argument("--bundle", metavar="DIR", help="an exported bundle to use instead of exporting one")
    p.add_argument("--video", metavar="FILE", help="the clip to copy --videos times (default: the sample video)")
    p.add_argument("--video-dir", metavar="DIR", help="use the videos of DIR as they are (no copies)")
    p.add_argument("--videos", type=int, default=32, help="copies of the clip (default 32)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    p.add_argument("--actors", default="1,2", help="inference actor counts to compare (default 1,2)")
    p.add_argument("--cpus-per-actor", type=float, default=0.5, help="CPUs each actor reserves (default 0.5, so 2 actors and a decode task fit 2 CPUs)")
    p.add_argument("--decode-cpus", type=float, default=0.5, help="CPUs each decode task reserves (default 0.5)")
    p.add_argument("--repeat", type=int, default=1, help="rounds (default 1)")
    p.add_argument("--json", metavar="FILE", help="also write every sample to FILE")
    args = p.parse_args(argv)
    actor_counts = [int(a) for a in args.actors.split(",")]

    from videploy.offline.dataset import list_videos
    from videploy.runtime.samples import sample_video_path

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="videploy-bench-pd-") as tmp:
        tmp_path = Path(tmp)
        if args.bundle:
            bundle = Path(args.bundle)
        elif args.overrides:
            from videploy.export.api import export_bundle

            name, small = SMALL[args.family]
            log(f"exporting {name} with {args.overrides}")
            export_bundle(name, tmp_path / "bundle", overrides={**small, **json.loads(args.overrides)}, batch="1:4:8", verify_batch_sizes=(1,))
            bundle = tmp_path / "bundle"
        else:
            bundle = export(args.family, tmp_path / "bundle", args.full_size, batch="1:4:8")
        if args.video_dir:
            vdir = Path(args.video_dir)
        else:
            vdir = tmp_path / "videos"
            vdir.mkdir()
            src = Path(args.video) if args.video else sample_video_path()
            for i in range(args.videos):
                shutil.copyfile(src, vdir / f"clip_{i:04d}{src.suffix}")
        files = [it.path for it in list_videos(vdir)]
        log(f"{len(files)} videos in {vdir}")

        predict = [sys.executable, "-m", "videploy", "predict", str(bundle), "--json", "--threads", "1"]
        # one video: predict's start-up (imports, bundle load), to tell it from its steady throughput
        cases: dict[str, list[str]] = {"predict, 1 video": [*predict, files[0]], "predict": [*predict, *files]}
        for n in actor_counts:
            cases[f"predict-dataset, {n} actor{'s' if n > 1 else ''}"] = [
                sys.executable, "-m", "videploy", "predict-dataset", str(bundle), str(vdir), "-o", "{out}", "--json",
                "--num-cpus", str(args.num_cpus), "--actors", str(n),
                "--cpus-per-actor", str(args.cpus_per_actor), "--decode-cpus", str(args.decode_cpus),
            ]
        samples: dict[str, list[dict]] = {k: [] for k in cases}
        for r in range(args.repeat):
            for name, cmd in cases.items():
                out = tmp_path / f"out-{r}-{len(samples[name])}-{name.split(',')[-1].strip().replace(' ', '')}"
                cmd = [c.replace("{out}", str(out)) for c in cmd]
                log(f"round {r + 1}: {name}")
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                wall = time.perf_counter() - t0
                if proc.returncode not in (0, 2):
                    sys.stderr.write(proc.stderr[-4000:])
                    raise SystemExit(f"{name} failed with status {proc.returncode}")
                doc = json.loads(proc.stdout)
                sample = {"wall_s": wall}
                if "seconds" in doc:
                    sample.update(pipeline_s=doc["seconds"], first_row_s=doc["first_row_s"], steady=doc["steady_videos_per_second"])
                    n_done = doc["written"]
                else:
                    n_done = len(doc["results"]) + len(doc["errors"])
                if n_done != (1 if name == "predict, 1 video" else len(files)):
                    raise SystemExit(f"{name} answered {n_done} of {len(files)} videos")
                samples[name].append(sample)

    med = lambda name, key: statistics.median(s[key] for s in samples[name])
    base = med("predict", "wall_s")
    one = med("predict, 1 video", "wall_s")
    predict_steady = (len(files) - 1) / (base - one) if base > one else float("nan")
    rows = [["predict", f"{base:.1f}", f"{len(files) / base:.2f}", "1.00x", f"{one:.1f}", f"{predict_steady:.2f}"]]
    for name in cases:
        if not name.startswith("predict-dataset"):
            continue
        wall = med(name, "wall_s")
        steady = med(name, "steady") if all(s["steady"] is not None for s in samples[name]) else float("nan")
        startup = wall - med(name, "pipeline_s") + med(name, "first_row_s")
        rows.append([name, f"{wall:.1f}", f"{len(files) / wall:.2f}", f"{base / wall:.2f}x", f"{startup:.1f}", f"{steady:.2f}"])
    lines = header(f"predict-dataset (Ray Data) vs videploy predict, {len(files)} videos")
    lines += [
        f"- bundle: {bundle if args.bundle else (FULL[args.family] if args.full_size else SMALL[args.family][0] + (' with ' + args.overrides if args.overrides else ' (small config)'))}; "
        f"local Ray instance of {args.num_cpus} CPUs; actors reserve {args.cpus_per_actor:g} CPU, decode tasks {args.decode_cpus:g} CPU; "
        f"onnxruntime 1 thread per process; {args.repeat} round(s), medians",
        "",
    ]
    lines += markdown_table(["case", "wall s", "videos/s (wall)", "vs predict (wall)", "start-up s", "videos/s (steady)"], rows)
    lines += [
        "",
        "wall: the whole command. start-up: predict - the wall time of a 1-video run; predict-dataset - until its first result",
        "(imports, Ray start, decode workers, actors loading the bundle). steady: predict - (N-1) / (wall N - wall 1);",
        "predict-dataset - the middle half of the rows / the time they took, from the rows' finished_at (its summary).",
    ]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(jsonsafe.dumps({"videos": len(files), "samples": samples}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
