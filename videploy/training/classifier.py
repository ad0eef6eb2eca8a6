"""Training single-graph video classifiers (Video-FocalNet, STAM): plain cross-entropy on the
model's logits, AdamW with a one-cycle schedule, deterministic by seed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from videploy.training import loop
from videploy.training.data import VideoSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierRecipe:
    epochs: int = 15
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    augment: bool = False  # symmetries of the square with mapped labels (the generated task)


def make_optimizer(model: torch.nn.Module, recipe: ClassifierRecipe, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=max(steps, 1), pct_start=0.15)
    return opt, sched


def train(
    model: torch.nn.Module,
    train_set: VideoSet,
    recipe: ClassifierRecipe,
    *,
    start_epoch: int = 0,
    optimizer_state: dict | None = None,
    on_epoch_end: Callable[[int, int, torch.optim.Optimizer, Any, float], None] | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    stop_after: int | None = None,
) -> list[float]:
    """Train from ``start_epoch``; ``on_epoch_end(1, epoch, optimizer, scheduler, loss)`` (stage is
    always 1) saves checkpoints. Returns the mean loss of each epoch run."""
    pre = model.preprocessing()
    steps = loop.steps_per_epoch(len(train_set), recipe.batch_size, max_steps)
    opt, sched = make_optimizer(model, recipe, steps * recipe.epochs)
    if optimizer_state is not None and start_epoch > 0:
        loop.restore(opt, sched, optimizer_state)
    history: list[float] = []
    for epoch in range(start_epoch, recipe.epochs):
        if stop_after is not None and len(history) >= stop_after:
            break
        torch.manual_seed(recipe.seed * 1000 + epoch)
        gen = torch.Generator().manual_seed(recipe.seed * 1000 + epoch)
        model.train()
        mean = loop.run_epoch(
            train_set, pre, recipe.batch_size, steps, gen, recipe.augment,
            lambda frames, labels: F.cross_entropy(model(frames), labels),
            opt, sched, f"epoch {epoch + 1}/{recipe.epochs}", progress,
        )
        history.append(mean)
        log.info("epoch %d/%d: loss %.4f", epoch + 1, recipe.epochs, mean)
        if on_epoch_end is not None:
            on_epoch_end(1, epoch + 1, opt, sched, mean)
    model.eval()
    return history
