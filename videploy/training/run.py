"""One training run, end to end: data, model, resumable training, weights, measurements.

:func:`train_model` is what ``videploy train`` calls. Its outputs in ``out_dir``:
``checkpoint.pt`` (resumable; ``load_checkpoint`` reads it), ``<model>.safetensors`` (the final
weights, or ``weights``), ``labels.txt`` and ``metrics.json`` (validation accuracy; for
AdaFocusV3 every exit with the learned and a random policy).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from videploy import jsonsafe
from videploy.datasets import actions
from videploy.errors import VideployError
from videploy.training import checkpoints
from videploy.training.data import VideoSet, check_labels, load_videos

log = logging.getLogger(__name__)

# Recipes of the zoo models trained on the generated action videos (the shipped weights).
RECIPES: dict[str, dict[str, Any]] = {
    "adafocusv3_actions": {"stage1_epochs": 26, "stage2_epochs": 2, "batch_size": 32, "lr": 2e-3, "policy_lr": 1e-3},
    "video_focalnet_actions": {"epochs": 60, "batch_size": 32, "lr": 3e-3},
    "stam_actions": {"epochs": 60, "batch_size": 32, "lr": 1e-3},
}


@dataclass(frozen=True)
class TrainResult:
    weights: Path
    checkpoint: Path
    metrics: dict[str, Any]
    seconds: float
    losses: list[float] = field(default_factory=list)


def default_data(data_dir: str | Path, seed: int = 0) -> Path:
    """The generated action task in ``data_dir`` (generated on first use); returns the folder."""
    d = Path(data_dir)
    if not all((d / f"{s}.csv").is_file() for s in actions.DEFAULT_SPLITS) or not (d / "labels.txt").is_file():
        log.info("generating the action videos into %s", d)
        actions.generate(d, seed=seed)
    return d


def _recipe(model: torch.nn.Module, name: str, seed: int, epochs: int | None, batch_size: int | None) -> Any:
    from videploy.models.adafocusv3 import AdaFocusV3
    from videploy.training.adafocusv3 import AdaFocusRecipe
    from videploy.training.classifier import ClassifierRecipe

    base = dict(RECIPES.get(name, {}))
    base["seed"] = seed
    if batch_size is not None:
        base["batch_size"] = batch_size
    if isinstance(model, AdaFocusV3):
        recipe = AdaFocusRecipe(**{k: v for k, v in base.items() if k in AdaFocusRecipe.__dataclass_fields__})
        if epochs is not None:  # split as the default recipe does (about 3 : 1)
            recipe = replace(recipe, stage1_epochs=max(1, round(epochs * 0.75)), stage2_epochs=max(0, epochs - max(1, round(epochs * 0.75))))
        return recipe
    recipe = ClassifierRecipe(**{k: v for k, v in base.items() if k in ClassifierRecipe.__dataclass_fields__})
    return replace(recipe, epochs=epochs) if epochs is not None else recipe


def evaluate(model: torch.nn.Module, videos: VideoSet, seed: int = 0) -> dict[str, Any]:
    from videploy.models.adafocusv3 import AdaFocusV3
    from videploy.training import evaluate as ev

    y = videos.labels
    if isinstance(model, AdaFocusV3):
        learned = ev.adafocus_outputs(model, videos, "learned")
        rand = ev.adafocus_outputs(model, videos, "random", seed=seed)
        return {
            "accuracy": ev.accuracy(learned.logits[:, -1], y),
            "glance_accuracy": ev.accuracy(learned.logits[:, 0], y),
            "exit_accuracy": [ev.accuracy(learned.logits[:, t], y) for t in range(learned.logits.shape[1])],
            "random_policy_exit_accuracy": [ev.accuracy(rand.logits[:, t], y) for t in range(rand.logits.shape[1])],
            "exit_gflops": model.exit_gflops(),
        }
    return {"accuracy": ev.accuracy(ev.classifier_logits(model, videos), y)}


def train_model(
    name: str,
    out_dir: str | Path,
    *,
    train_csv: str | Path | None = None,
    val_csv: str | Path | None = None,
    labels: str | Path | None = None,
    data_dir: str | Path | None = None,
    weights: str | Path | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    max_videos: int | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    threads: int | None = 1,
    stop_after: int | None = None,
    augment: bool | None = None,
) -> TrainResult:
    """Train zoo model ``name`` on a ``path,label`` CSV (default: the generated action videos).

    ``max_videos`` / ``max_steps`` cut the data and the steps per epoch (smoke tests);
    ``stop_after`` stops after that many epochs of this call (a time-boxed run; ``resume`` continues
    it exactly, since the schedule is that of the whole recipe).
    ``augment``: flips and transposes with mapped labels; ``None`` turns them on exactly when the
    labels are the generated task's (other tasks may have a preferred orientation).
    ``threads``: torch's intra-op threads (``None`` leaves torch's default). One is the default
    because these small models run many small ops, and on a shared or busy CPU every multi-threaded
    op waits for its slowest thread: measured on 2 busy cores, a training step took 4 s with one
    thread and 34-90 s with two.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train_model(name, out_dir, train_csv, val_csv, labels, data_dir, weights, epochs, batch_size, seed, resume, overrides, max_videos, max_steps, progress, stop_after, augment)
    finally:
        torch.set_num_threads(previous)


def _train_model(
    name: str,
    out_dir: str | Path,
    train_csv: str | Path | None,
    val_csv: str | Path | None,
    labels: str | Path | None,
    data_dir: str | Path | None,
    weights: str | Path | None,
    epochs: int | None,
    batch_size: int | None,
    seed: int,
    resume: bool,
    overrides: dict[str, Any] | None,
    max_videos: int | None,
    max_steps: int | None,
    progress: bool,
    stop_after: int | None,
    augment: bool | None,
) -> TrainResult:
    from videploy.models import create, load_checkpoint
    from videploy.models.adafocusv3 import AdaFocusV3
    from videploy.runtime.labels import read_labels

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if train_csv is None:
        d = default_data(data_dir or out / "data", seed=0)
        train_csv, val_csv = d / "train.csv", val_csv or d / "val.csv"
        labels = labels or d / "labels.txt"
    overrides = dict(overrides or {})
    if labels is not None and "num_classes" not in overrides:
        overrides["num_classes"] = len([ln for ln in Path(labels).read_text().splitlines() if ln.strip()])
    torch.manual_seed(seed)
    model = create(name, **overrides)
    names = read_labels(labels, model.num_classes) if labels is not None else None
    pre = model.preprocessing()
    cache = out / "cache"
    train_set = load_videos(train_csv, pre, cache, progress=progress)
    val_set = load_videos(val_csv, pre, cache, progress=progress) if val_csv is not None else None
    if max_videos is not None:
        train_set = train_set.subset(max_videos)
        val_set = val_set.subset(max_videos) if val_set is not None else None
    check_labels(train_set, model.num_classes, str(train_csv))
    recipe = _recipe(model, name, seed, epochs, batch_size)
    if augment is None:
        # The generated task has no preferred orientation: flips and transposes with mapped labels
        # are exact new examples (8x the data for free).
        augment = names is not None and tuple(names) == actions.CLASSES
    if augment and (names is None or tuple(names) != actions.CLASSES):
        raise VideployError("augmentation maps the generated task's labels (videploy dataset); other label sets have no known symmetry, train without it")
    recipe = replace(recipe, augment=bool(augment))
    ckpt = out / "checkpoint.pt"
    config = {"model": name, "overrides": overrides, "recipe": asdict(recipe), "train_csv": str(train_csv), "val_csv": str(val_csv)}

    def on_epoch_end(stage: int, epoch: int, opt: Any, sched: Any, loss: float) -> None:
        checkpoints.save_training_checkpoint(ckpt, model, opt, sched, {"stage": stage, "epoch": epoch, "loss": loss}, config)

    state = None
    if resume:
        state = checkpoints.read_training_checkpoint(ckpt)
        load_checkpoint(model, state["state_dict"])
        log.info("resuming from %s at %s", ckpt, state["progress"])
    if isinstance(model, AdaFocusV3):
        from videploy.training import adafocusv3 as trainer

        start = (int(state["progress"]["stage"]), int(state["progress"]["epoch"])) if state else (1, 0)
        if state and start[0] == 1 and start[1] >= recipe.stage1_epochs:
            start = (2, 0)
        losses = trainer.train(model, train_set, recipe, start=start, optimizer_state=state, on_epoch_end=on_epoch_end, progress=progress, max_steps=max_steps, stop_after=stop_after)
    else:
        from videploy.training import classifier as trainer

        first = int(state["progress"]["epoch"]) if state else 0
        losses = trainer.train(model, train_set, recipe, start_epoch=first, optimizer_state=state, on_epoch_end=on_epoch_end, progress=progress, max_steps=max_steps, stop_after=stop_after)
    model.eval()
    if not ckpt.is_file():  # nothing ran (resumed a finished run): keep the loaded weights
        raise VideployError(f"no epoch ran and there is no checkpoint in {out}; nothing to save")
    metrics = {"val": evaluate(model, val_set, seed) if val_set is not None else None, "train_seconds": time.perf_counter() - t0, "losses": losses}
    weights_path = Path(weights) if weights is not None else out / f"{name}.safetensors"
    meta = {"model": name, "overrides": jsonsafe.dumps(overrides, default=str), "recipe": jsonsafe.dumps(asdict(recipe)), "videploy_train": "videploy train " + name}
    if names is not None:
        meta["labels"] = jsonsafe.dumps(list(names))
    checkpoints.save_weights(weights_path, model, meta)
    if labels is not None:
        shutil.copyfile(labels, out / "labels.txt")
    (out / "metrics.json").write_text(jsonsafe.dumps(metrics, indent=2, default=float))
    return TrainResult(weights=weights_path, checkpoint=ckpt, metrics=metrics, seconds=time.perf_counter() - t0, losses=losses)
