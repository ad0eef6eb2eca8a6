"""``videploy train``: train a zoo model on labelled videos (default: the generated action task)."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Train a zoo model on a 'path,label' CSV of videos and write safetensors weights that
'videploy export NAME --checkpoint WEIGHTS' turns into a bundle.

Without --train, the task is videploy's own generated action videos (videploy dataset): 10
classes of a small triangle moving, growing, rotating or blinking for part of a cluttered clip.
They are generated into OUT/data on first use (about 40 s).

Videos are decoded once with the runtime's own reader, sampling and resize / crop (the model's
bundle preprocessing), so training sees what deployment sees; the frames are cached in
OUT/cache. Every epoch writes OUT/checkpoint.pt (resumable with --resume; load_checkpoint reads
it); the end writes the weights, OUT/labels.txt and OUT/metrics.json (validation accuracy; for
AdaFocusV3 every exit, with the learned and a random policy).

AdaFocusV3 trains as the paper does for short clips: the loss summed over every exit; stage 1
the encoders and classifier with a random policy, stage 2 the policy alone through the
deep-feature interpolation gradient. Runs are deterministic by --seed.
"""

EPILOG = """\
examples:
  videploy train adafocusv3_actions --weights runs/adafocusv3_actions.safetensors
                                          reproduce the shipped weights (17 min on one CPU core; deterministic)
  videploy train stam_actions -o runs/stam --epochs 3
  videploy train video_focalnet_actions --train my/train.csv --val my/val.csv --labels my/labels.txt
  videploy train adafocusv3_actions -o runs/ada --resume   continue from runs/ada/checkpoint.pt
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a model on labelled videos (default: generated action videos)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="zoo name, e.g. adafocusv3_actions, video_focalnet_actions, stam_actions")
    p.add_argument("-o", "--out", metavar="DIR", help="run folder for data, cache, checkpoint, metrics (default runs/MODEL)")
    p.add_argument("--train", metavar="CSV", help="'path,label' CSV of training videos (paths relative to the CSV)")
    p.add_argument("--val", metavar="CSV", help="'path,label' CSV of validation videos")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line (sets num_classes)")
    p.add_argument("--data", metavar="DIR", help="where the generated action videos live / are generated (default OUT/data)")
    p.add_argument("--weights", metavar="FILE", help="where the final .safetensors goes (default OUT/MODEL.safetensors)")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs (AdaFocusV3: both stages, split about 3:1); default: the model's recipe")
    p.add_argument("--batch-size", type=int, metavar="N", help="videos per step (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop after N epochs of this run (continue later with --resume; the schedule is the whole recipe's)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads (default 1: small models on shared CPUs run fastest single-threaded; 0 = torch's default)")
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip / transpose clips with mapped labels (default: on for the generated task's labels, off otherwise)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="model keyword override (repeatable)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from videploy.errors import VideployError
    from videploy.export.api import parse_overrides
    from videploy.optional import require

    require("torch", "videploy train")
    from videploy.training.run import train_model

    if (args.train is None) != (args.val is None):
        raise VideployError("give both --train and --val CSVs, or neither (the generated action videos)")
    out_dir = Path(args.out or Path("runs") / args.model)
    result = train_model(
        args.model,
        out_dir,
        train_csv=args.train,
        val_csv=args.val,
        labels=args.labels,
        data_dir=args.data,
        weights=args.weights,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        resume=args.resume,
        overrides=parse_overrides(args.overrides),
        threads=args.threads or None,
        stop_after=args.stop_after,
        augment=args.augment,
    )
    out = Console(soft_wrap=True)
    val = result.metrics.get("val") or {}
    out.print(f"trained {args.model} in {result.seconds / 60:.1f} min", highlight=False)
    if "accuracy" in val:
        out.print(f"validation accuracy {100 * val['accuracy']:.1f}%", highlight=False)
    if "glance_accuracy" in val:
        out.print(
            f"  glance only {100 * val['glance_accuracy']:.1f}%, random policy (all steps) {100 * val['random_policy_exit_accuracy'][-1]:.1f}%",
            highlight=False,
        )
    out.print(f"weights: {result.weights}", highlight=False)
    out.print(f"checkpoint: {result.checkpoint}", highlight=False)
    out.print(f"next: videploy export {args.model} -o {out_dir / 'bundle'} --checkpoint {result.weights} --labels {out_dir / 'labels.txt'}", highlight=False)
    return 0
