"""Measurements of a trained model on a decoded split (PyTorch, eval mode).

* :func:`adafocus_outputs` -- every exit's logits of AdaFocusV3 with the learned policy (what the
  deployed graphs compute) or a random one, plus the cubes (frame indices, boxes) it looked at;
* :func:`early_exit_report` -- paper Eq. 7 on these logits: thresholds fitted on one split
  (``videploy.calibration.exit_thresholds``), applied to another;
* :func:`focus_hits` -- how often the cubes land on the acting object / inside the action
  window, from the generator's sidecar (``<split>_boxes.json``);
* :func:`classifier_logits` -- single-graph families.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from videploy.calibration.exit_thresholds import expected_gflops, fit_thresholds, geometric_exit_distribution, simulate_exits
from videploy.datasets.actions import actor_centres, boxes_contain, read_boxes
from videploy.models.adafocusv3 import AdaFocusV3
from videploy.models.adafocusv3_parts import entropy, patch_box
from videploy.training import adafocusv3 as af
from videploy.training.data import VideoSet, batches, normalize


@dataclass(frozen=True)
class AdaFocusOutputs:
    logits: np.ndarray  # (N, Tf + 1, C): exit 0 = glance, exit t after focus step t
    frame_indices: np.ndarray  # (N, Tf) indices into the S sampled frames
    boxes: np.ndarray  # (N, Tf, 4) x1, y1, x2, y2 in input pixels


@torch.no_grad()
def adafocus_outputs(model: AdaFocusV3, videos: VideoSet, policy: str = "learned", seed: int = 0, batch_size: int = 64, progress: bool = False) -> AdaFocusOutputs:
    """Per-exit logits on ``videos`` with the ``"learned"`` policy or a ``"random"`` one (uniform
    distinct frames and uniform actions, the stage-1 training policy) at the same number of steps."""
    model.eval()
    c = model.config
    pre = model.preprocessing()
    gen = torch.Generator().manual_seed(seed)
    out_logits, out_idx, out_boxes = [], [], []
    for rows in tqdm(batches(len(videos), batch_size), desc=f"evaluating ({policy} policy)", disable=not progress, leave=False):
        frames = normalize(videos.frames[rows.numpy()], pre)
        featmap, global_feat = af.glance(model, frames)
        if policy == "learned":
            idx, actions, _ = af.learned_policy(model, featmap, global_feat)
        elif policy == "random":
            idx, actions = af.random_policy(frames.shape[0], model, gen)
        else:
            raise ValueError(f"policy must be 'learned' or 'random', got {policy!r}")
        logits = af.exit_logits(model, global_feat, af.local_features(model, frames, idx, actions))
        out_logits.append(logits[:, c.num_glance_segments - 1 :].numpy())
        out_idx.append(idx.numpy())
        x1, y1, x2, y2, _, _ = patch_box(actions.reshape(-1, 4), c.patch_size, c.input_size, c.patch_size, c.min_patch_pixels, c.max_patch_pixels)
        out_boxes.append(torch.stack([x1, y1, x2, y2], dim=-1).reshape(idx.shape[0], -1, 4).numpy())
    return AdaFocusOutputs(np.concatenate(out_logits), np.concatenate(out_idx), np.concatenate(out_boxes))


@torch.no_grad()
def classifier_logits(model: torch.nn.Module, videos: VideoSet, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    model.eval()
    pre = model.preprocessing()
    out = [model(normalize(videos.frames[r.numpy()], pre)).numpy() for r in tqdm(batches(len(videos), batch_size), desc="evaluating", disable=not progress, leave=False)]
    return np.concatenate(out)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def exit_entropies(logits: np.ndarray) -> np.ndarray:
    return entropy(torch.from_numpy(logits)).numpy()


def early_exit_report(fit: AdaFocusOutputs, fit_labels: np.ndarray, test: AdaFocusOutputs, test_labels: np.ndarray, exit_gflops: list[float], tolerance: float = 0.01) -> dict[str, Any]:
    """Thresholds fitted on ``fit`` (geometric exit fractions q^t, the official search); the
    cheapest q whose accuracy on ``fit`` is within ``tolerance`` of all-steps accuracy is applied
    to ``test``. Returns accuracies and average GFLOPs on the test videos."""
    e_fit, e_test = exit_entropies(fit.logits), exit_entropies(test.logits)
    n_exits = fit.logits.shape[1]
    full_fit = accuracy(fit.logits[:, -1], fit_labels)
    cost = np.asarray(exit_gflops, dtype=np.float64)
    best = None
    # the official geometric exit distributions, plus everyone at one exit (the last always qualifies)
    candidates = [(geometric_exit_distribution(q, n_exits), q) for q in np.geomspace(1e-2, 1e2, 161)]
    candidates += [(np.eye(n_exits)[t], None) for t in range(n_exits)]
    for dist, q in candidates:
        eta = fit_thresholds(e_fit, dist)
        ex = simulate_exits(e_fit, eta)
        acc = float((fit.logits[np.arange(len(ex)), ex].argmax(-1) == fit_labels).mean())
        g = expected_gflops(e_fit, eta, cost)
        if acc >= full_fit - tolerance and (best is None or g < best[2]):
            best = (q, eta, g)
    assert best is not None
    q, eta, _ = best
    ex = simulate_exits(e_test, eta)
    acc = float((test.logits[np.arange(len(ex)), ex].argmax(-1) == test_labels).mean())
    g = float(cost[ex].mean())
    return {
        "q": None if q is None else float(q),
        "thresholds": [float(x) for x in eta],
        "accuracy": acc,
        "gflops": g,
        "all_steps_accuracy": accuracy(test.logits[:, -1], test_labels),
        "all_steps_gflops": float(cost[-1]),
        "gflops_fraction": g / float(cost[-1]),
        "exit_fractions": (np.bincount(ex, minlength=n_exits) / len(ex)).tolist(),
    }


def focus_hits(outputs: AdaFocusOutputs, videos: VideoSet, boxes_json: str | Path, model: AdaFocusV3) -> dict[str, float]:
    """Fraction of cubes whose crop box contains the actor's centre in the chosen frame
    (``spatial``), whose frame lies in the action window (``temporal``), and both (``both``);
    ``distinct_boxes``: fraction of videos whose first cube box differs from the first video's."""
    meta = read_boxes(boxes_json)
    root = Path(boxes_json).parent
    pre = model.preprocessing()
    hits_s, hits_t, hits_b = [], [], []
    for i, path in enumerate(videos.paths):
        rel = Path(path).resolve().relative_to(root.resolve()).as_posix()
        info = meta[rel]
        src = videos.frame_indices[i][outputs.frame_indices[i]]  # source frames of the cubes
        s = boxes_contain(outputs.boxes[i], actor_centres(info, src, pre.resize_short, pre.crop_size[0]))
        lo, hi = info["window"]
        t = (src >= lo) & (src < hi)
        hits_s.append(s)
        hits_t.append(t)
        hits_b.append(s & t)
    first = outputs.boxes[:, 0]
    distinct = float((np.abs(first - first[0]).max(axis=1) > 0.5).mean())
    return {
        "spatial": float(np.mean(hits_s)),
        "temporal": float(np.mean(hits_t)),
        "both": float(np.mean(hits_b)),
        "distinct_boxes": distinct,
    }
