"""The epoch loop every trainer shares: deterministic batch order, optional augmentation, one
optimiser step per batch, a progress bar with the running loss. What differs between trainers --
the loss of a batch, the seed of an epoch, which parameters learn -- stays with each trainer."""

from __future__ import annotations

from typing import Any, Callable

import torch
from tqdm import tqdm

from videploy.bundle.manifest import Preprocessing
from videploy.training.data import VideoSet, batch_tensors, batches


def steps_per_epoch(videos: int, batch_size: int, max_steps: int | None = None) -> int:
    steps = len(batches(videos, batch_size, drop_last=True))
    return steps if max_steps is None else min(steps, max_steps)


def restore(optimizer: torch.optim.Optimizer, scheduler: Any, state: dict) -> None:
    """Continue an interrupted run: the optimiser's moments and the schedule's position."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])


def run_epoch(
    train_set: VideoSet,
    preprocessing: Preprocessing,
    batch_size: int,
    steps: int,
    generator: torch.Generator,
    augment: bool,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    desc: str,
    progress: bool,
) -> float:
    """One epoch; returns the mean loss. ``generator`` orders the batches and draws the
    augmentation (and whatever ``loss_of`` draws), so a seeded epoch repeats exactly."""
    order = batches(len(train_set), batch_size, generator=generator, drop_last=True)[:steps]
    total, bar = 0.0, tqdm(order, desc=desc, unit="batch", disable=not progress, leave=False)
    for i, rows in enumerate(bar):
        frames, labels = batch_tensors(train_set, rows, preprocessing, generator if augment else None)
        loss = loss_of(frames, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += float(loss.detach())
        bar.set_postfix(loss=f"{total / (i + 1):.3f}")
    return total / max(len(order), 1)
