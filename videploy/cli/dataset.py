"""``videploy dataset``: write the generated action videos (videploy's own training / demo task)."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Write videploy's generated action-recognition task: labelled clips as real video files.

Each clip shows a cluttered scene with drifting distractors and one small saturated triangle,
placed anywhere, that acts during only part of the clip: still, move left / right / up / down,
grow, shrink, rotate clockwise / counter-clockwise, or blink. Motion leaves a short fading
trail, so the right frame at the right place tells the class; a low-resolution glance cannot.

Output: OUT/<split>/*.mp4, OUT/<split>.csv ('path,label', paths relative to OUT),
OUT/<split>_boxes.json (the actor's box in every frame and the action window), OUT/labels.txt.
Deterministic by --seed.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("dataset", help="write the generated action videos", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--train", type=int, default=None, metavar="N", help="training videos (default 2000)")
    p.add_argument("--val", type=int, default=None, metavar="N", help="validation videos (default 300)")
    p.add_argument("--test", type=int, default=None, metavar="N", help="test videos (default 300)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from videploy.datasets.actions import DEFAULT_SPLITS, generate

    splits = {s: n if n is not None else DEFAULT_SPLITS[s] for s, n in (("train", args.train), ("val", args.val), ("test", args.test))}
    t0 = time.perf_counter()
    paths = generate(args.out, {s: n for s, n in splits.items() if n > 0}, seed=args.seed)
    out = Console(soft_wrap=True)
    for split, csv_path in paths.items():
        out.print(f"{split}: {splits[split]} videos, {csv_path}", highlight=False)
    out.print(f"labels: {args.out}/labels.txt ({time.perf_counter() - t0:.1f} s)", highlight=False)
    return 0
