"""AdaFocusV3 building blocks with the official Uni-AdaFocus call surfaces and key names.

Three modules (registered as component families by :mod:`videploy.models.adafocusv3`):

* :class:`SpatialPolicy` — where to look: a small 3-D conv net over the glance feature maps of
  all glance frames, one sigmoid action ``[y, x, scale_y, scale_x]`` per glance frame;
* :class:`TemporalPolicy` — when to look: 1-D (``(3, 1)`` 2-D) convs over the glance frames'
  pooled features, a softmax distribution over the glance frames (plain and temperature-scaled);
* :class:`PoolingClassifier` — the exits: per-frame MLP features, running element-wise max over
  time, one linear head per glance frame and one per focus step.

and three functions with the official keyword names:

* :func:`get_patch_grid_scalexy` — the crop of a (scaled) patch from frames or feature maps;
* :func:`policy_sample_indices` — which frames to focus on, from the temporal policy's weights;
* :func:`mc_sample_feature` — the Monte-Carlo temporal feature used only by the training loss.

Everything here is written so that ``torch.export`` / ONNX see static control flow: loops run a
fixed number of times fixed by the configuration, never by tensor values.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from videploy.models.base import exporting

# The official crop code hard-codes the patch-scale range for 224-pixel frames: a patch covers
# between MIN_PATCH_PIXELS and MAX_PATCH_PIXELS input pixels, whatever ``input_size`` is.
MIN_PATCH_PIXELS = 96
MAX_PATCH_PIXELS = 224
# Width of the classifier's per-frame MLP features (fixed upstream, independent of every argument).
MLP_WIDTH = 4096


# --------------------------------------------------------------------------------------------
# Patch cropping
# --------------------------------------------------------------------------------------------


def patch_box(
    actions: torch.Tensor,
    patch_size: int | float,
    image_size: int | float,
    input_patch_size: int | float,
    min_pixels: int | float = MIN_PATCH_PIXELS,
    max_pixels: int | float = MAX_PATCH_PIXELS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The crop window of each action, in the pixel units of ``image_size``.

    ``actions`` (N, 4) holds ``[y, x, scale_y, scale_x]`` in [0, 1]. Returns ``x1, y1, x2, y2,
    width, height`` (each (N,)), evaluated in the same operation order as the official code so the
    float results agree bit for bit with it. ``min_pixels`` / ``max_pixels``: the box side range
    (the official 96..224; smaller frames need their own).
    """
    scale = actions[:, 2:4] * (max_pixels - min_pixels) / input_patch_size + min_pixels / input_patch_size
    corner = actions[:, :2] * (image_size - patch_size * scale)
    height = patch_size * scale[:, 0]
    width = patch_size * scale[:, 1]
    y1 = corner[:, 0]
    x1 = corner[:, 1]
    return x1, y1, x1 + width, y1 + height, width, height


def _base_coordinates(n: int, device: torch.device) -> torch.Tensor:
    # Pixel centres of an n-pixel axis in normalised [-1, 1] coordinates with align_corners=False:
    # (2j + 1) / n - 1, the base grid F.affine_grid uses. Integers first, so the values are exact.
    return (torch.arange(n, device=device, dtype=torch.float32) * 2.0 + (1.0 - n)) / n


def get_patch_grid_scalexy(
    input_frames: torch.Tensor,
    actions: torch.Tensor,
    patch_size: int,
    image_size: int | float,
    input_patch_size: int | float,
    min_pixels: int | float = MIN_PATCH_PIXELS,
    max_pixels: int | float = MAX_PATCH_PIXELS,
) -> torch.Tensor:
    """Crop one ``patch_size`` x ``patch_size`` patch per row of ``input_frames`` (N, C, H, W).

    Same result as the official ``F.affine_grid`` (align_corners=False) + ``F.grid_sample``
    (bilinear, zeros padding, align_corners=False) with a scale-and-translate ``theta``, but the
    sampling grid is built from elementwise ops: TensorRT parses neither AffineGrid nor 5-D
    GridSample, only 4-D GridSample. The grid is float32 whatever the frames' dtype (as upstream).
    """
    x1, y1, x2, y2, width, height = patch_box(actions, patch_size, image_size, input_patch_size, min_pixels, max_pixels)
    # theta = [[sx, 0, tx], [0, sy, ty]] of the official code, as float32.
    sx = (width / image_size).float()
    sy = (height / image_size).float()
    tx = (-1 + (x1 + x2) / image_size).float()
    ty = (-1 + (y1 + y2) / image_size).float()
    base = _base_coordinates(int(patch_size), input_frames.device)  # (P,)
    n, p = actions.shape[0], int(patch_size)
    gx = sx[:, None] * base[None, :] + tx[:, None]  # (N, P): x of each output column
    gy = sy[:, None] * base[None, :] + ty[:, None]  # (N, P): y of each output row
    grid = torch.stack([gx[:, None, :].expand(n, p, p), gy[:, :, None].expand(n, p, p)], dim=-1)  # (N, P, P, 2)
    return F.grid_sample(input_frames, grid.to(input_frames.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


# --------------------------------------------------------------------------------------------
# Temporal selection
# --------------------------------------------------------------------------------------------


def _interpolate_x(x1: torch.Tensor, y1: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # x on the line through (x1, y1), (x2, y2) at height y; the official expression order.
    return (x2 * (y - y1) - x1 * (y - y2)) / (y2 - y1)


def sample_frame_indices(
    weights: torch.Tensor,
    num_segments: int,
    num_global_segments: int,
    num_local_segments: int,
    rand_sample: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-video focus frame indices (B, num_local_segments) in [0, num_segments), int64.

    Inverse-CDF sampling of the temporal policy's distribution over the ``num_global_segments``
    glance segments at the quantiles (i + 0.5) / num_local_segments (or i + U[0, 1) when
    ``rand_sample``), linearly interpolated inside a segment, scaled to ``num_segments`` frames,
    then made strictly increasing and clamped so every index stays valid. The ActivityNet-folder
    variant of the official function (with the segment clamp).
    """
    b = weights.shape[0]
    tg, tf = num_global_segments, num_local_segments
    # Cumulative weights with a leading 0; the last entry is pinned to 1 (upstream fixes rounding so).
    cdf = torch.cat([weights.new_zeros(b, 1), weights.cumsum(dim=1)[:, :-1], weights.new_ones(b, 1)], dim=1)  # (B, Tg+1)
    threshold = torch.arange(tf, device=weights.device, dtype=torch.float32)
    if rand_sample:
        noise = torch.rand((b, tf), device=weights.device, dtype=torch.float32, generator=generator)
        threshold = (threshold + noise) / tf
    else:
        threshold = ((threshold + 0.5) / tf).expand(b, tf)
    # First position j with cdf[j] >= threshold: the number of leading positions where it is not
    # yet reached. Counting leading zeros of a cumulative sum keeps this numeric (ONNX has no
    # ArgMax over booleans) and exact even if rounding made the cdf dip at its pinned end.
    # The count is summed in float32 (exact: at most Tg + 1) and cast after: OpenVINO's CPU plugin
    # (2026.4) sums an int64 cast of a comparison wrongly for every row after the first, which
    # sent focus indices to -1 on batches > 1 (tests/runtime/test_openvino.py).
    reached = (cdf.unsqueeze(2) >= threshold.unsqueeze(1)).to(torch.float32)  # (B, Tg+1, Tf)
    first = (reached.cumsum(dim=1) == 0).to(torch.float32).sum(dim=1).to(torch.int64)  # (B, Tf)
    seg = first.clamp(1, tg) - 1
    left = (seg.to(torch.float32) / tg).to(cdf.dtype)
    right = ((seg + 1).to(torch.float32) / tg).to(cdf.dtype)
    quantile = _interpolate_x(left, cdf.gather(1, seg), right, cdf.gather(1, seg + 1), threshold.to(cdf.dtype))
    idx = torch.floor(quantile * num_segments).to(torch.int64)
    # Strictly increasing (a fixed number of steps: unrolled by export), then at most the last
    # indices that still leave room for the remaining ones.
    cols = list(idx.unbind(dim=1))
    for i in range(1, tf):
        cols[i] = torch.where(cols[i] > cols[i - 1], cols[i], cols[i - 1] + 1)
    idx = torch.stack(cols, dim=1)
    limit = (num_segments - tf) + torch.arange(tf, device=weights.device, dtype=torch.int64)
    return torch.minimum(idx, limit.unsqueeze(0))


def policy_sample_indices(
    weights: torch.Tensor,
    num_segments: int,
    num_global_segments: int,
    num_local_segments: int,
    rand_sample: bool = False,
    device: Any = None,  # official keyword; tensors stay on the weights' device
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The official call: focus indices flattened to (B * num_local_segments,) absolute frame rows
    ``b * num_segments + t`` into a (B * num_segments, ...) frame stack."""
    idx = sample_frame_indices(weights, num_segments, num_global_segments, num_local_segments, rand_sample, generator)
    offset = torch.arange(weights.shape[0], device=weights.device, dtype=torch.int64).unsqueeze(1) * num_segments
    return (idx + offset).reshape(-1)


def mc_sample_feature(
    global_feat: torch.Tensor,
    weights: torch.Tensor,
    global_feature_dim: int,
    T1: int,  # noqa: N803 - official keyword name
    sample_times: int = 128,
    device: Any = None,  # official keyword; ignored
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte-Carlo expectation of the weighted temporal mean of ``global_feat`` (training loss only).

    For draw i in [0, T1): zero the weights of i frames drawn without replacement (proportionally
    to the weights), take the renormalised weighted mean over frames; average over the T1 draws
    and ``sample_times`` repetitions. T1 = 1 is deterministic (the plain weighted mean); for
    T1 > 1 the draws use ``generator`` (or the global RNG, as upstream).
    """
    b = weights.shape[0]
    feat = global_feat.reshape(b, -1, global_feature_dim)
    t = feat.shape[1]
    rep_weights = weights.unsqueeze(1).repeat(1, sample_times, 1).reshape(-1, t)
    rep_feat = feat.unsqueeze(1).repeat(1, sample_times, 1, 1).reshape(-1, t, global_feature_dim)
    total = torch.zeros(b * sample_times, global_feature_dim, device=global_feat.device, dtype=torch.float32)
    for i in range(T1):
        w = rep_weights
        if i > 0:
            drop = torch.multinomial(rep_weights, i, replacement=False, generator=generator)
            w = rep_weights.scatter(1, drop, 0.0)
        mean = (rep_feat * w.unsqueeze(-1)).sum(dim=1) / w.sum(dim=1).detach().unsqueeze(-1)
        total = total + mean
    total = total / T1
    return total.reshape(b, sample_times, global_feature_dim).mean(dim=1)


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


class SpatialPolicy(nn.Module):
    """Actions (N*T, 4) in (0, 1) from glance feature maps (N*T, C, 7, 7), rows video-major.

    The glance frames of a video are stacked along a depth axis and mixed by 3x3x3 convs; a final
    (1, 7, 7) conv reduces each frame to its 4 action logits (so the map must be 7x7).
    """

    family = "spatial_policy"

    def __init__(self, stn_feature_dim: int, hidden_dim: int, num_glance_segments: int, map_size: int = 7) -> None:
        super().__init__()
        self.num_glance_segments = num_glance_segments
        h = hidden_dim
        self.encoder = nn.Sequential(
            nn.Conv3d(stn_feature_dim, h, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm3d(h),
            nn.ReLU(),
            nn.Conv3d(h, h, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm3d(h),
            nn.ReLU(),
            nn.Conv3d(h, h, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm3d(h),
            nn.ReLU(),
            nn.Conv3d(h, 4, kernel_size=(1, map_size, map_size), stride=1, padding=0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if exporting():
            return self._frames_forward(features)
        nt, c, h, w = features.shape
        t = self.num_glance_segments
        x = features.reshape(-1, t, c, h, w).permute(0, 2, 1, 3, 4)  # (N, C, T, H, W)
        actions = self.encoder(x).flatten(2).permute(0, 2, 1)  # (N, T, 4)
        return actions.reshape(nt, 4)

    def _frames_forward(self, frames: torch.Tensor) -> torch.Tensor:
        """The same computation on (N*T, C, H, W) frames with 2-D convolutions, for export: a
        3x3x3 conv is one 3x3 conv over each frame stacked with its neighbours along channels.
        onnxruntime and OpenVINO run 2-D convs in their blocked layouts and 3-D ones far slower
        (the policy graph took 53 ms at batch 8 against PyTorch's 28 ms; profile: the two 3x3x3
        convs). Inference only: batch norm with its running statistics."""
        conv_in, bn_in, _, conv_a, bn_a, _, conv_b, bn_b, _, conv_out, _ = self.encoder
        t = self.num_glance_segments

        def norm(x: torch.Tensor, bn: nn.BatchNorm3d) -> torch.Tensor:
            return F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))

        def conv333(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
            nt, c, h, w = x.shape
            v = x.reshape(-1, t, c, h, w)
            zero = torch.zeros_like(v[:, :1])
            stacked = torch.cat([torch.cat([zero, v[:, :-1]], 1), v, torch.cat([v[:, 1:], zero], 1)], dim=2)  # (N, T, 3C, H, W)
            weight = conv.weight.permute(0, 2, 1, 3, 4).flatten(1, 2)  # (O, 3C, 3, 3): depth-major, as stacked
            return F.conv2d(stacked.reshape(nt, 3 * c, h, w), weight, padding=1)

        x = norm(F.conv2d(frames, conv_in.weight[:, :, 0]), bn_in)
        x = norm(conv333(x, conv_a), bn_a)
        x = norm(conv333(x, conv_b), bn_b)
        return torch.sigmoid(F.conv2d(x, conv_out.weight[:, :, 0])).flatten(1)  # (N*T, 4)


class TemporalPolicy(nn.Module):
    """``(weights, weights_T)``, each (N, T): softmax over the T glance frames of each video, plain
    and at ``temperature``, from pooled glance features (N*T, D), rows video-major."""

    family = "temporal_policy"

    def __init__(
        self, input_dim: int, hidden_dim: int, num_glance_segments: int, temperature: float = 1.0, device: Any = None
    ) -> None:
        super().__init__()
        del device  # upstream placed tensors with it; parameters follow .to() here
        self.input_dim = input_dim
        self.num_glance_segments = num_glance_segments
        self.T = temperature
        # Convs over time only: kernel (3, 1) on a (D, T, 1) "image".
        self.Tconv = nn.Sequential(
            nn.Conv2d(input_dim, hidden_dim, kernel_size=(3, 1), stride=1, padding=(1, 0), bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(),
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size=(3, 1), stride=1, padding=(1, 0), bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(),
            nn.Conv2d(hidden_dim, 1, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(-1, self.num_glance_segments, self.input_dim).permute(0, 2, 1).unsqueeze(-1)  # (N, D, T, 1)
        scores = self.Tconv(x).flatten(1)  # (N, T)
        return F.softmax(scores, dim=1), F.softmax(scores / self.T, dim=1)


# --------------------------------------------------------------------------------------------
# Classifier
# --------------------------------------------------------------------------------------------


class MultiLayerPerceptron(nn.Module):
    """Linear + BatchNorm1d + ReLU to ``num_neurons`` features (keys ``layers.{0,1}``)."""

    def __init__(self, input_dim: int, num_neurons: int = MLP_WIDTH) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.layers = nn.Sequential(nn.Linear(input_dim, num_neurons), nn.BatchNorm1d(num_neurons), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PoolingClassifier(nn.Module):
    """All exits of AdaFocusV3 from per-frame glance and focus features.

    ``forward(global_feat (B, Tg, Dg), local_feat (B, Tf, Dl)) -> (logits (B*(Tg+Tf), C), last_out (B, C))``,
    rows ``b*(Tg+Tf) + s``: for s < Tg global head s on the running max (over frames <= s) of the
    4096-d global MLP features; for s = Tg + j local head j on [running max of the local MLP
    features over steps <= j, final global running max].
    """

    family = "pooling_classifier"

    def __init__(
        self,
        global_feature_dim: int,
        local_feature_dim: int,
        num_glance_segments: int,
        num_focus_segments: int,
        num_classes: int,
        dropout: float = 0.2,
        device: Any = None,
        mlp_width: int = MLP_WIDTH,
    ) -> None:
        super().__init__()
        del device  # upstream placed its logits buffer with it
        self.global_feature_dim = global_feature_dim
        self.local_feature_dim = local_feature_dim
        self.num_glance_segments = num_glance_segments
        self.num_focus_segments = num_focus_segments
        self.num_classes = num_classes
        self.global_mlp = MultiLayerPerceptron(global_feature_dim, mlp_width)
        self.local_mlp = MultiLayerPerceptron(local_feature_dim, mlp_width)
        self.global_classifiers = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(mlp_width, num_classes)) for _ in range(num_glance_segments)
        )
        self.local_classifiers = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * mlp_width, num_classes)) for _ in range(num_focus_segments)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        z1 = self.global_mlp(x.reshape(-1, self.global_feature_dim)).reshape(b, self.num_glance_segments, -1)
        z2 = self.local_mlp(y.reshape(-1, self.local_feature_dim)).reshape(b, self.num_focus_segments, -1)
        exits = []
        state_g = z1[:, 0]
        for s, head in enumerate(self.global_classifiers):
            if s > 0:
                state_g = torch.maximum(z1[:, s], state_g)
            exits.append(head(state_g))
        state_l = z2[:, 0]
        for j, head in enumerate(self.local_classifiers):
            if j > 0:
                state_l = torch.maximum(z2[:, j], state_l)
            exits.append(head(torch.cat([state_l, state_g], dim=1)))
        logits = torch.stack(exits, dim=1)  # (B, Tg+Tf, C)
        return logits.reshape(b * logits.shape[1], -1), logits[:, -1]


def max_over_frames(x: torch.Tensor) -> torch.Tensor:
    """``x.amax(dim=1)`` for a static dim 1 (frames), as a chain of elementwise maxima (exact, like amax).

    Exported, ``amax`` is a ReduceMax whose axes are an input (opset 18+); ONNX Runtime's symbolic
    shape inference, which TensorRT and optimizer users run on graphs, cannot shape it and loses
    every shape downstream. Elementwise ``Max`` keeps them.
    """
    out = x[:, 0]
    for i in range(1, x.shape[1]):
        out = torch.maximum(out, x[:, i])
    return out


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Prediction entropy in nats, -sum p log p over the last axis (the exit criterion)."""
    return -(F.softmax(logits, dim=-1) * F.log_softmax(logits, dim=-1)).sum(dim=-1)
