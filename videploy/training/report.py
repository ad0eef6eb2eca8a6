"""The numbers that say whether the trained models do what the project claims, on the test split.

Run after training (the shipped weights by default)::

    python -m videploy.training.report --data runs/actions --json runs/report.json

For AdaFocusV3 (paper Table 5, Eq. 7): all-steps accuracy vs the glance alone and vs a random
policy at the same number of steps; early exit with thresholds fitted on the validation split
(the cheapest geometric exit distribution within 1 point of all-steps accuracy on validation),
applied to the test split; how often the policy's cubes land on the acting object and inside
the action window vs the random policy; whether the cubes differ across videos. For the single-
graph comparison models: test accuracy and GFLOPs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from videploy import jsonsafe
from videploy.training import checkpoints
from videploy.training import evaluate as ev
from videploy.training.data import load_videos

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def adafocus_report(model: Any, data: Path, cache: Path | None) -> dict[str, Any]:
    pre = model.preprocessing()
    val = load_videos(data / "val.csv", pre, cache, progress=False)
    test = load_videos(data / "test.csv", pre, cache, progress=False)
    lv, lt = ev.adafocus_outputs(model, val, "learned"), ev.adafocus_outputs(model, test, "learned")
    rt = ev.adafocus_outputs(model, test, "random", seed=0)
    y = test.labels
    gflops = model.exit_gflops()
    return {
        "test_videos": len(test),
        "all_steps_accuracy": ev.accuracy(lt.logits[:, -1], y),
        "glance_accuracy": ev.accuracy(lt.logits[:, 0], y),
        "random_policy_accuracy": ev.accuracy(rt.logits[:, -1], y),
        "exit_accuracy": [ev.accuracy(lt.logits[:, t], y) for t in range(lt.logits.shape[1])],
        "random_policy_exit_accuracy": [ev.accuracy(rt.logits[:, t], y) for t in range(rt.logits.shape[1])],
        "exit_gflops": gflops,
        "early_exit": ev.early_exit_report(lv, val.labels, lt, y, gflops),
        "focus_hits_learned": ev.focus_hits(lt, test, data / "test_boxes.json", model),
        "focus_hits_random": ev.focus_hits(rt, test, data / "test_boxes.json", model),
    }


def classifier_report(model: Any, data: Path, cache: Path | None) -> dict[str, Any]:
    from videploy.models.flops import count_gflops

    test = load_videos(data / "test.csv", model.preprocessing(), cache, progress=False)
    return {"test_videos": len(test), "accuracy": ev.accuracy(ev.classifier_logits(model, test), test.labels), "gflops": count_gflops(model, model.example_inputs(1))}


def bundle_report(model: Any, name: str, data: Path, out: Path, count: int) -> dict[str, Any]:
    """Export ``model`` through the usual path, run the bundle with the torch-free runtime on the
    first ``count`` test videos, and compare its top-1 with PyTorch's on the same decoded frames."""
    import numpy as np

    from videploy.datasets.actions import read_split
    from videploy.export import export_bundle
    from videploy.runtime import load

    rows = read_split(data / "test.csv")[:count]
    export_bundle(model, out, labels=data / "labels.txt", name=name, overwrite=True, video=rows[0][0], verify_batch_sizes=(1, 2))
    preds = load(out).predict_batch([str(p) for p, _ in rows], top_k=1)
    runtime_top1 = np.array([p.top[0].index for p in preds])
    labels = np.array([y for _, y in rows])
    test = load_videos(data / "test.csv", model.preprocessing(), progress=False).subset(count)
    from videploy.models.adafocusv3 import AdaFocusV3

    if isinstance(model, AdaFocusV3):
        torch_top1 = ev.adafocus_outputs(model, test, "learned").logits[:, -1].argmax(-1)
    else:
        torch_top1 = ev.classifier_logits(model, test).argmax(-1)
    return {
        "bundle": str(out),
        "videos": count,
        "runtime_accuracy": float((runtime_top1 == labels).mean()),
        "runtime_agrees_with_torch": float((runtime_top1 == torch_top1).mean()),
        "first_prediction_label": preds[0].top[0].label,
    }


def main(argv: list[str] | None = None) -> int:
    from videploy.models import create
    from videploy.models.adafocusv3 import AdaFocusV3

    p = argparse.ArgumentParser(prog="python -m videploy.training.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="the generated action videos (videploy dataset DIR)")
    p.add_argument("--models", default="adafocusv3_actions,video_focalnet_actions,stam_actions", help="comma-separated zoo names")
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="folder with MODEL.safetensors (default: the shipped weights)")
    p.add_argument("--cache", type=Path, help="decoded-frame cache folder")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--bundles", type=Path, help="also export each model to a bundle under this folder and run it with the runtime")
    p.add_argument("--bundle-videos", type=int, default=60, help="test videos run through each bundle (default 60)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    report: dict[str, Any] = {}
    for name in args.models.split(","):
        model = create(name)
        checkpoints.load_weights(model, args.weights_dir / f"{name}.safetensors")
        model.eval()
        report[name] = adafocus_report(model, args.data, args.cache) if isinstance(model, AdaFocusV3) else classifier_report(model, args.data, args.cache)
        if args.bundles is not None:
            report[name]["bundle"] = bundle_report(model, name, args.data, args.bundles / name, args.bundle_videos)
        print(jsonsafe.dumps({name: report[name]}, indent=1, default=float), file=sys.stdout, flush=True)
    if args.json:
        args.json.write_text(jsonsafe.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
