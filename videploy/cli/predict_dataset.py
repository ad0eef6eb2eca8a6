"""``videploy predict-dataset``: a bundle over a whole video collection, on Ray Data, into Parquet."""

from __future__ import annotations

import argparse
from videploy import jsonsafe
from typing import Any

DESCRIPTION = """\
Run a bundle over a video collection -- thousands to millions of clips -- with Ray Data, and
write one row per video to Parquet. Each answer is the one 'videploy predict' gives for that
video (same decoding, same backend, same AdaFocusV3 early exit): the torch-free runtime runs
unchanged inside the Ray stages.

INPUT is a directory (searched recursively for video files), a quoted glob ('clips/**/*.mp4'),
or a CSV of path[,label] (optional header row 'path,label'; relative paths are relative to the
CSV). OUT is a directory of Parquet shards: pandas.read_parquet(OUT) reads them all. Columns:
path, label, error, top_indices / top_labels / top_probabilities (most probable first),
num_frames, frame_indices, gflops, exit_step / num_steps / full_gflops / cubes (AdaFocusV3),
notes, decode_s, infer_s, finished_at.

How it runs: CPU tasks decode and preprocess videos; a pool of inference actors, each holding
the bundle once (and a GPU on GPU backends), predicts batches of decoded videos. The two stages
overlap and scale independently (--decode-batch, --actors, --inference-batch). Ray streams the
data, so memory stays bounded whatever the collection's size.

Real-world behaviour:
  damaged videos    a row with the error message; the job goes on
  resume            re-run the same command (same OUT) after a crash, Ctrl-C or a pre-empted
                    node: videos already written are skipped; no video is ever written twice.
                    Shards are written atomically (temp file + rename) every --shard-rows rows
                    or --shard-seconds, so a crash loses at most that much work. Resuming with
                    other settings (model, --top-k, --views, --thresholds, --precision) is
                    refused; failed videos count as done (list them in a CSV to retry).
  cluster           --address joins an existing Ray cluster (same command); every node needs
                    videploy installed and must see the bundle and the videos at the same paths
                    (a shared file system). Without --address a local Ray instance is started.
"""

EPILOG = """\
examples:
  videploy predict-dataset vfn_t/ videos/ -o preds/
  videploy predict-dataset vfn_t/ 'k400/val/**/*.mp4' -o preds/ --labels k400.txt --top-k 5
  videploy predict-dataset ada/ val.csv -o preds/ --thresholds 0.5,0.8,0.8,1.0,...
  videploy predict-dataset vfn_t/ videos/ -o preds/ --actors 4 --cpus-per-actor 2
  videploy predict-dataset vfn_t/ videos/ -o preds/ --backend tensorrt --address auto     one actor per GPU
  videploy predict-dataset vfn_t/ videos/ -o preds/ --device cuda --gpus-per-actor 0.5    two actors share a GPU
  python -c "import pandas as pd; df = pd.read_parquet('preds/'); print(df[df.error.notna()])"

exit status: 0 every listed video has a row (damaged ones with their error) or --limit was
reached; 2 an error (bad bundle, input or options; the job failed: re-run to resume).
Needs Ray: pip install 'videploy[ray]'.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict-dataset",
        help="run a bundle over a video collection on Ray Data, into Parquet (resumable)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by 'videploy export'")
    p.add_argument("input", metavar="INPUT", help="directory of videos, quoted glob, or CSV of path[,label]")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output directory of Parquet shards (created; an existing one is resumed)")
    g = p.add_argument_group("prediction (as videploy predict)")
    g.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt"], help="onnxruntime (default) or tensorrt (engines from 'videploy build')")
    g.add_argument("--device", metavar="DEV", help="cpu (default), cuda, or tensorrt (onnxruntime's TensorRT provider); the tensorrt backend uses cuda")
    g.add_argument("--precision", metavar="P", help="graph / engine variant: fp32, fp16, int8 (default: the bundle's)")
    g.add_argument("--labels", metavar="FILE", help="class names, one per line or id,name CSV (default: the bundle's, if any)")
    g.add_argument("--top-k", type=int, default=5, metavar="K", help="classes kept per video (default 5)")
    g.add_argument("--views", metavar="CxK", help="multi-view test: CLIPSxCROPS or 'official' (default 1x1)")
    g.add_argument("--thresholds", metavar="T0,T1,...", help="AdaFocusV3 exit thresholds eta_0..eta_T in nats (default: the bundle's)")
    g.add_argument("--batch-size", type=int, metavar="N", help="rows per backend call (default: the bundle's maximum batch)")
    g.add_argument(
        "--continuous",
        action=argparse.BooleanOptionalAction,
        help="AdaFocusV3 batching inside each actor call: continuous (the default) or --no-continuous (static)",
    )
    g.add_argument("--threads", type=int, metavar="N", help="onnxruntime intra-op threads per actor (default: --cpus-per-actor)")
    s = p.add_argument_group("scale-out (Ray)")
    s.add_argument("--address", metavar="ADDR", help="existing Ray cluster: auto, HOST:6379 or ray://HOST:10001 (default: start a local instance)")
    s.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray instance (default: all)")
    s.add_argument("--actors", metavar="N|MIN-MAX", help="inference actors, fixed or autoscaled (default: one per GPU on GPU backends, else 1)")
    s.add_argument("--cpus-per-actor", type=float, default=1.0, metavar="C", help="CPUs each inference actor holds (default 1)")
    s.add_argument("--gpus-per-actor", type=float, metavar="G", help="GPUs each actor holds, fractions share a GPU (default: 1 on GPU backends, else 0)")
    s.add_argument("--inference-batch", type=int, metavar="N", help="videos per actor call (default: the bundle's maximum batch)")
    s.add_argument("--decode-batch", type=int, default=2, metavar="N", help="videos per decode task call (default 2)")
    s.add_argument("--decode-cpus", type=float, default=1.0, metavar="C", help="CPUs each decode task holds (default 1)")
    s.add_argument("--shard-rows", type=int, default=1000, metavar="N", help="write a results shard every N rows ... (default 1000)")
    s.add_argument("--shard-seconds", type=float, default=60.0, metavar="S", help="... or every S seconds (default 60)")
    s.add_argument("--limit", type=int, metavar="N", help="predict at most N of the pending videos (a trial run; re-run for the rest)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)
    return p


def parse_actors(text: str | None) -> int | tuple[int, int] | None:
    from videploy.errors import VideployError

    if text is None:
        return None
    parts = text.split("-")
    try:
        nums = [int(x) for x in parts]
    except ValueError:
        raise VideployError(f"--actors {text!r}: expected N or MIN-MAX (e.g. 2, or 1-4)") from None
    if len(nums) == 1:
        return nums[0]
    if len(nums) == 2:
        return (nums[0], nums[1])
    raise VideployError(f"--actors {text!r}: expected N or MIN-MAX (e.g. 2, or 1-4)")


def run(args: argparse.Namespace) -> int:
    import logging

    from rich.console import Console
    from tqdm import tqdm

    from videploy.cli.options import prediction_options
    from videploy.offline import PredictOptions, ScaleOptions, predict_dataset
    from videploy.optional import require

    verbose = bool(getattr(args, "verbose", False))
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    options = PredictOptions(**prediction_options(args))
    scale = ScaleOptions(
        address=args.address,
        num_cpus=args.num_cpus,
        actors=parse_actors(args.actors),
        cpus_per_actor=args.cpus_per_actor,
        gpus_per_actor=args.gpus_per_actor,
        inference_batch=args.inference_batch,
        decode_batch=args.decode_batch,
        decode_cpus=args.decode_cpus,
        shard_rows=args.shard_rows,
        shard_seconds=args.shard_seconds,
        limit=args.limit,
    )
    rd = require("ray.data", "predict-dataset (distributed batch inference)")
    if not verbose:
        # our own progress bar below says what matters; -v shows Ray's operator bars and logs
        ctx = rd.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)

    bar: Any = None

    def progress(p: Any) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, unit="video", desc="predict-dataset", dynamic_ncols=True, mininterval=1.0)
        bar.update(p.done - bar.n)
        bar.set_postfix(errors=p.errors, shards=p.shards, refresh=False)

    try:
        summary = predict_dataset(args.bundle, args.input, args.out, options, scale, progress=progress, quiet_decoder=not verbose)
    finally:
        if bar is not None:
            bar.close()

    if args.json:
        print(
            jsonsafe.dumps(
                {
                    "out": str(summary.out),
                    "listed": summary.listed,
                    "skipped": summary.skipped,
                    "written": summary.written,
                    "errors": summary.errors,
                    "remaining": summary.remaining,
                    "seconds": summary.seconds,
                    "videos_per_second": summary.videos_per_second,
                    "first_row_s": summary.first_row_s,
                    "steady_videos_per_second": summary.steady_videos_per_second,
                    "shards": [str(s) for s in summary.shards],
                    "error_samples": [{"path": p, "error": e} for p, e in summary.error_samples],
                },
                indent=2,
            )
        )
        return 0
    if summary.written == 0 and not summary.remaining:
        out.print(f"nothing to do: all {summary.listed} videos already have a row in {summary.out}")
        return 0
    steady = summary.steady_videos_per_second
    out.print(
        f"{summary.written} videos in {summary.seconds:.1f} s ([bold]{summary.videos_per_second:.2f} videos/s[/]"
        + (f"; steady {steady:.2f} videos/s over the middle half, after {summary.first_row_s:.1f} s of start-up" if steady is not None else "")
        + "), "
        f"{summary.errors} error{'s' if summary.errors != 1 else ''}; {summary.skipped} already done before this run"
        + (f"; {summary.remaining} left (--limit)" if summary.remaining else ""),
        soft_wrap=True,
    )
    out.print(f"results: {summary.out} ({len(summary.shards)} new shard{'s' if len(summary.shards) != 1 else ''}); read with pandas.read_parquet({str(summary.out)!r})", soft_wrap=True)
    for path, message in summary.error_samples[:10]:
        err.print(f"videploy predict-dataset: error: {message}", markup=False, soft_wrap=True)
    if summary.errors > 10:
        err.print(f"... and {summary.errors - 10} more: rows with a non-null 'error' column", markup=False)
    return 0
