"""Training single-graph video classifiers (Video-FocalNet, STAM): plain cross-entropy on the
model's logits, AdamW with a one-cycle schedule, deterministic by seed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from videploy.training.data import VideoSet, batch_tensors, batches

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
    steps_per_epoch = len(batches(len(train_set), recipe.batch_size, drop_last=True))
    if max_steps is not None:
        steps_per_epoch = min(steps_per_epoch, max_steps)
    opt, sched = make_optimizer(model, recipe, steps_per_epoch * recipe.epochs)
    if optimizer_state is not None and start_epoch > 0:
        opt.load_state_dict(optimizer_state["optimizer"])
        sched.load_state_dict(optimizer_state["scheduler"])
    history: list[float] = []
    for epoch in range(start_epoch, recipe.epochs):
        if stop_after is not None and len(history) >= stop_after:
            break
        torch.manual_seed(recipe.seed * 1000 + epoch)
        gen = torch.Generator().manual_seed(recipe.seed * 1000 + epoch)
        model.train()
        order = batches(len(train_set), recipe.batch_size, generator=gen, drop_last=True)[:steps_per_epoch]
        total, bar = 0.0, tqdm(order, desc=f"epoch {epoch + 1}/{recipe.epochs}", unit="batch", disable=not progress, leave=False)
        for i, rows in enumerate(bar):
            frames, labels = batch_tensors(train_set, rows, pre, gen if recipe.augment else None)
            loss = F.cross_entropy(model(frames), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
            bar.set_postfix(loss=f"{total / (i + 1):.3f}")
        mean = total / max(len(order), 1)
        history.append(mean)
        log.info("epoch %d/%d: loss %.4f", epoch + 1, recipe.epochs, mean)
        if on_epoch_end is not None:
            on_epoch_end(1, epoch + 1, opt, sched, mean)
    model.eval()
    return history
