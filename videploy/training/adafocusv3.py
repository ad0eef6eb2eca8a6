"""Training AdaFocusV3 as the paper does for short clips (AdaFocusV3, ECCV 2022, Sec. 3.3 and App. C).

Loss (Eq. 1): cross-entropy summed over every exit of the classifier -- each glance head and
each focus step's head -- so that every prefix of the cube sequence predicts well.

Two stages (App. C, the schedule for Something-Something / Diving48, i.e. short clips):

1. **encoders and classifier with a random policy**: the glance network, the local encoder and
   the classifier learn from cubes at uniformly random frames (distinct, in time order) and
   uniformly random actions (``[y, x, scale_y, scale_x]`` in [0, 1]); the policy is not used.
2. **the policy, on its own**: encoders and classifier are frozen (eval mode); the spatial and
   the temporal policy pick the cubes exactly as the deployed policy graph does, and learn from the
   same summed loss through the **deep-feature interpolation gradient** (Eqs. 5-6): for each cube
   a slightly larger cube is cropped *without* gradient -- the box grown by one feature cell (32
   input-patch pixels) on each axis, and the next sampled frame in time -- so its local feature
   map ``e'`` is one element larger per axis; the cube's features ``e`` are then read from ``e'``
   by (bi/tri)linear interpolation at ``o + c - StopGradient(c)``, where ``o`` are the element
   centres of a map of ``e``'s size placed at the centre of ``e'`` and ``c`` is the policy's cube
   centre (x, y from the spatial policy, z -- the continuous frame position -- from the temporal
   policy's inverse-CDF sampling) in feature units. The forward value does not depend on ``c``;
   its gradient reaches the policy through the feature maps, never through pixels. The box size
   (the scale actions) enters the same way, as a stretch of ``o`` about the centre.
   The loss's *value* uses the cube's own features (the deployed crop), and the interpolated
   features add only their gradient (``exact + interp - StopGradient(interp)``): with this model's
   2 x 2 local feature maps, the interpolated values (the middle of a larger cube's map, half of
   it from the next frame) differ from the cube's own enough that the summed loss rose from 11.4
   to 13.2 at the start of stage 2, and a policy trained on those values chose cubes that scored
   worse at deployment than the untrained policy's (validation 69% vs 79%).

Nothing else of the deployed model changes: the trained model exports through the usual
glance / policy / local graphs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from videploy.models.adafocusv3 import AdaFocusV3, crop_patches, glance_input, segment_actions
from videploy.models.adafocusv3_parts import patch_box, sample_frame_indices
from videploy.training import loop
from videploy.training.data import VideoSet

log = logging.getLogger(__name__)

FEATURE_STRIDE = 32  # the local ResNet's output stride: one feature cell = 32 patch pixels


# --------------------------------------------------------------------------------------------
# Forward pieces
# --------------------------------------------------------------------------------------------


def glance(model: AdaFocusV3, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Glance feature maps (B*Tg, D, m, m) and pooled features (B*Tg, D) of frames (B, S, 3, H, W)."""
    index = torch.tensor(model.glance_indices, dtype=torch.int64, device=frames.device)
    g = frames.index_select(1, index).flatten(0, 1)
    return model.global_CNN.get_featmap(glance_input(g, model.config))


def random_policy(batch_size: int, model: AdaFocusV3, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random cubes: (B, Tf) distinct frame indices in time order, (B, Tf, 4) uniform actions."""
    c = model.config
    idx = torch.rand(batch_size, c.num_segments, generator=generator).argsort(dim=1)[:, : c.num_focus_segments]
    actions = torch.rand(batch_size, c.num_focus_segments, 4, generator=generator)
    return idx.sort(dim=1).values, actions


def learned_policy(model: AdaFocusV3, featmap: torch.Tensor, global_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The deployed policy graph's choice: frame indices (B, Tf), actions (B, Tf, 4) and the
    temporal weights (B, Tg) they came from."""
    c = model.config
    tg, s, tf = c.num_glance_segments, c.num_segments, c.num_focus_segments
    b = featmap.shape[0] // tg
    actions = segment_actions(model.spatial_policy(featmap), tg, s)  # (B, S, 4)
    _, weights = model.temporal_policy(global_feat)
    idx = sample_frame_indices(weights, s, tg, tf)
    chosen = actions.gather(1, idx.unsqueeze(-1).expand(b, tf, 4))
    return idx, chosen, weights


def focus_positions(weights: torch.Tensor, num_segments: int, num_glance_segments: int, num_focus_segments: int) -> torch.Tensor:
    """The continuous frame coordinate z (B, Tf) behind :func:`sample_frame_indices`'s indices:
    the inverse CDF of the temporal weights at quantiles (i + 0.5) / Tf, times S -- differentiable
    in the weights (the indices are its floor, made increasing)."""
    b = weights.shape[0]
    tg, tf = num_glance_segments, num_focus_segments
    cdf = torch.cat([weights.new_zeros(b, 1), weights.cumsum(dim=1)[:, :-1], weights.new_ones(b, 1)], dim=1)
    q = ((torch.arange(tf, dtype=weights.dtype, device=weights.device) + 0.5) / tf).expand(b, tf)
    first = (cdf.unsqueeze(2) >= q.unsqueeze(1)).to(torch.int64).cumsum(dim=1).eq(0).sum(dim=1)
    seg = first.clamp(1, tg) - 1
    lo, hi = cdf.gather(1, seg), cdf.gather(1, seg + 1)
    frac = (q - lo) / (hi - lo).clamp_min(1e-12)
    return (seg.to(weights.dtype) + frac) / tg * num_segments


def select_frames(frames: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """frames (B, S, 3, H, W), idx (B, Tf) -> (B*Tf, 3, H, W)."""
    b = frames.shape[0]
    return frames[torch.arange(b, device=frames.device).unsqueeze(1), idx].flatten(0, 1)


def local_features(model: AdaFocusV3, frames: torch.Tensor, idx: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Pooled local features (B, Tf, D) of the cubes at (idx, actions), cropped as deployed."""
    b, tf = idx.shape
    patches = crop_patches(select_frames(frames, idx), actions.reshape(-1, 4), model.config)
    return model.local_CNN.get_featvec(patches).reshape(b, tf, -1)


def exit_logits(model: AdaFocusV3, global_feat: torch.Tensor, local_feat: torch.Tensor) -> torch.Tensor:
    """Every head's logits (B, Tg + Tf, C): glance heads 0..Tg-1, then one per focus step."""
    c = model.config
    b = local_feat.shape[0]
    logits, _ = model.classifier(global_feat.reshape(b, c.num_glance_segments, -1), local_feat)
    return logits.reshape(b, c.num_glance_segments + c.num_focus_segments, -1)


def summed_exit_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 1: cross-entropy summed over exits, averaged over videos."""
    b, e, n = logits.shape
    return F.cross_entropy(logits.reshape(b * e, n), labels.repeat_interleave(e), reduction="sum") / b


def _crop_boxes(frames: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, bw: torch.Tensor, bh: torch.Tensor, out: int, image: int) -> torch.Tensor:
    # The official crop (affine grid, align_corners=False, bilinear, zero padding) of a box given
    # by centre and size, at ``out`` x ``out`` pixels.
    base = (torch.arange(out, dtype=torch.float32, device=frames.device) * 2.0 + (1.0 - out)) / out
    gx = (bw / image)[:, None] * base[None, :] + (2.0 * cx / image - 1.0)[:, None]
    gy = (bh / image)[:, None] * base[None, :] + (2.0 * cy / image - 1.0)[:, None]
    n = frames.shape[0]
    grid = torch.stack([gx[:, None, :].expand(n, out, out), gy[:, :, None].expand(n, out, out)], dim=-1)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def deep_feature_local_features(
    model: AdaFocusV3, frames: torch.Tensor, idx: torch.Tensor, actions: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """Pooled local features (B, Tf, D) whose gradient reaches ``actions`` and ``z`` only through
    interpolation of deep features (Eqs. 5-6); see the module docstring."""
    c = model.config
    b, tf = idx.shape
    p, stride = c.patch_size, FEATURE_STRIDE
    x1, y1, x2, y2, bw, bh = patch_box(actions.reshape(-1, 4), p, c.input_size, p, c.min_patch_pixels, c.max_patch_pixels)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    with torch.no_grad():
        grow = (p + stride) / p  # one more feature cell per axis
        nxt = (idx + 1).clamp(max=c.num_segments - 1)
        both = torch.cat([select_frames(frames, idx), select_frames(frames, nxt)])
        crops = _crop_boxes(both, *(t.detach().repeat(2) for t in (cx, cy, bw * grow, bh * grow)), out=p + stride, image=c.input_size)
        big = model.local_CNN.get_featmap(crops)[0]  # (2*B*Tf, D, hf + 1, wf + 1)
    e0, e1 = big.chunk(2)
    n1 = big.shape[-1]  # hf + 1
    cell_x, cell_y = stride * bw / p, stride * bh / p  # input pixels per feature element
    o = torch.arange(n1 - 1, dtype=torch.float32, device=big.device) + 0.5  # centres of an hf map inside e'
    mid = (n1 - 1) / 2.0
    # positions in e' index units: stretch about the centre by the box's relative size change,
    # shift by the centre's change; both are exactly 0 / 1 in the forward pass
    sx = (bw / bw.detach())[:, None]
    sy = (bh / bh.detach())[:, None]
    px = mid + (o[None, :] - mid) * sx + ((cx - cx.detach()) / cell_x.detach())[:, None]
    py = mid + (o[None, :] - mid) * sy + ((cy - cy.detach()) / cell_y.detach())[:, None]
    m = o.numel()
    grid = torch.stack([px[:, None, :].expand(-1, m, m), py[:, :, None].expand(-1, m, m)], dim=-1) / (n1 - 1) * 2.0 - 1.0
    f0 = F.grid_sample(e0, grid, mode="bilinear", padding_mode="border", align_corners=True)
    f1 = F.grid_sample(e1, grid, mode="bilinear", padding_mode="border", align_corners=True)
    # time: the cube's frame and the next one; read at 0.5 + (z - StopGradient(z))
    wz = (0.5 + (z - z.detach())).reshape(-1, 1, 1, 1)
    e = (1.0 - wz) * f0 + wz * f1
    return e.mean(dim=(2, 3)).reshape(b, tf, -1)


# --------------------------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaFocusRecipe:
    """Stage lengths and optimiser settings (defaults: the ``adafocusv3_actions`` recipe)."""

    stage1_epochs: int = 12
    stage2_epochs: int = 4
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    policy_lr: float = 1e-3
    seed: int = 0
    augment: bool = False  # symmetries of the square with mapped labels (the generated task)


def _stage_parameters(model: AdaFocusV3, stage: int) -> list[torch.nn.Parameter]:
    policy = {id(p) for m in (model.spatial_policy, model.temporal_policy) for p in m.parameters()}
    params = list(model.parameters())
    chosen = [p for p in params if (id(p) in policy) == (stage == 2)]
    for p in params:
        p.requires_grad_(any(p is q for q in chosen))
    return chosen


def _set_modes(model: AdaFocusV3, stage: int) -> None:
    if stage == 1:
        model.train()
        model.spatial_policy.eval()
        model.temporal_policy.eval()
    else:
        model.eval()
        model.spatial_policy.train()
        model.temporal_policy.train()


def make_optimizer(model: AdaFocusV3, stage: int, recipe: AdaFocusRecipe, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    params = _stage_parameters(model, stage)
    lr = recipe.lr if stage == 1 else recipe.policy_lr
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    return opt, sched


def train_step(model: AdaFocusV3, stage: int, frames: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The summed-exit loss of one batch (normalised frames (B, S, 3, H, W)) in ``stage``."""
    c = model.config
    if stage == 1:
        featmap, global_feat = glance(model, frames)
        idx, actions = random_policy(frames.shape[0], model, generator)
        local = local_features(model, frames, idx, actions)
    else:
        with torch.no_grad():
            featmap, global_feat = glance(model, frames)
        idx, actions, weights = learned_policy(model, featmap, global_feat)
        z = focus_positions(weights, c.num_segments, c.num_glance_segments, c.num_focus_segments)
        interpolated = deep_feature_local_features(model, frames, idx, actions, z)
        with torch.no_grad():
            exact = local_features(model, frames, idx, actions)
        # the value is what the deployed local graph computes; only the gradient comes from the
        # interpolation (see the module docstring)
        local = exact + (interpolated - interpolated.detach())
    return summed_exit_loss(exit_logits(model, global_feat, local), labels)


def train(
    model: AdaFocusV3,
    train_set: VideoSet,
    recipe: AdaFocusRecipe,
    *,
    start: tuple[int, int] = (1, 0),
    optimizer_state: dict | None = None,
    on_epoch_end: Callable[[int, int, torch.optim.Optimizer, Any, float], None] | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    stop_after: int | None = None,
) -> list[float]:
    """Run both stages from ``start`` = (stage, epochs already done in it); returns mean losses per
    epoch. ``on_epoch_end(stage, epoch, optimizer, scheduler, loss)`` saves checkpoints.
    ``max_steps`` stops each epoch early (smoke tests)."""
    pre = model.preprocessing()
    history: list[float] = []
    for stage, epochs in ((1, recipe.stage1_epochs), (2, recipe.stage2_epochs)):
        if stage < start[0] or epochs == 0:
            continue
        steps = loop.steps_per_epoch(len(train_set), recipe.batch_size, max_steps)
        opt, sched = make_optimizer(model, stage, recipe, steps * epochs)
        first = start[1] if stage == start[0] else 0
        if optimizer_state is not None and stage == start[0] and first > 0:
            loop.restore(opt, sched, optimizer_state)
        for epoch in range(first, epochs):
            if stop_after is not None and len(history) >= stop_after:
                break
            # Everything random in an epoch follows from (seed, stage, epoch): resuming is exact.
            torch.manual_seed(recipe.seed * 1000 + stage * 100 + epoch)
            gen = torch.Generator().manual_seed(recipe.seed * 1000 + stage * 100 + epoch)
            _set_modes(model, stage)
            mean = loop.run_epoch(
                train_set, pre, recipe.batch_size, steps, gen, recipe.augment,
                lambda frames, labels: train_step(model, stage, frames, labels, gen),  # noqa: B023 - used within this epoch
                opt, sched, f"stage {stage} epoch {epoch + 1}/{epochs}", progress,
            )
            history.append(mean)
            log.info("stage %d epoch %d/%d: loss %.4f", stage, epoch + 1, epochs, mean)
            if on_epoch_end is not None:
                on_epoch_end(stage, epoch + 1, opt, sched, mean)
    for p in model.parameters():
        p.requires_grad_(True)
    return history
