"""AdaFocusV3 (official code: Uni-AdaFocus) as one PyTorch model and three deployable graphs.

The model glances at ``num_glance_segments`` (Tg) of the ``num_segments`` (S) sampled frames with
MobileNetV2, lets a spatial and a temporal policy choose ``num_focus_segments`` (Tf) cubes (a
frame + a crop box), and encodes those one at a time with ResNet-50 on ``patch_size`` patches.
Every stage ends in an exit: exit 0 after the glance, exit t after local step t.

``AdaFocusV3.forward(video)`` is the official evaluation forward (all exits at once);
``deploy_graphs()`` splits it into what a runtime runs with real early exit:

* ``glance``  frames (B, Tg, 3, H, W) -> logits, entropy, global_state, featmap, global_feat
* ``policy``  featmap, global_feat -> frame_indices (B, Tf, K), actions (B, Tf, 4), boxes (B, Tf, 4)
* ``local``   frames (B, K, 3, H, W), action, step, local_state, global_state
              -> logits, entropy, next_local_state

Chaining them (glance; policy; local for t = 0..Tf-1 on ``frames[frame_indices[:, t]]``,
``actions[:, t]``, ``step = t``, the state carried) gives the same logits as ``forward`` at every
exit. The graphs have no control flow that depends on tensor values and static shapes apart from
the batch, so each passes ``torch.export`` with a dynamic batch (and then ONNX / TensorRT).

Checkpoints: official state dicts keep their key names; :func:`convert_official_state_dict`
drops, by name, the heads that only the training loss uses (``DROPPED_PREFIXES``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from videploy.bundle.manifest import EarlyExit, Preprocessing
from videploy.errors import VideployError
from videploy.models.adafocusv3_parts import (
    MAX_PATCH_PIXELS,
    MIN_PATCH_PIXELS,
    MLP_WIDTH,
    PoolingClassifier,
    SpatialPolicy,
    TemporalPolicy,
    entropy,
    get_patch_grid_scalexy,
    max_over_frames,
    mc_sample_feature,
    patch_box,
    policy_sample_indices,
    sample_frame_indices,
)
from videploy.models.base import GraphModule, VideoModel, exporting
from videploy.models.blocks.mobilenet_v2 import MobileNetV2
from videploy.models.blocks.resnet import ResNet
from videploy.models.registry import Entry, Family, register, register_family

__all__ = [
    "AdaFocusV3",
    "AdaFocusV3Config",
    "AdaFocusV3Glance",
    "AdaFocusV3Local",
    "AdaFocusV3Policy",
    "DROPPED_PREFIXES",
    "PoolingClassifier",
    "SpatialPolicy",
    "TemporalPolicy",
    "convert_official_state_dict",
    "get_patch_grid_scalexy",
    "infer_config",
    "mc_sample_feature",
    "policy_sample_indices",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GLANCE_FEATURE_DIM = 1280  # MobileNetV2 (width <= 1.0) last_channel
LOCAL_FEATURE_DIM = 2048  # ResNet-50 pooled layer4
GLANCE_MAP_SIZE = 7  # the official spatial policy's final (1, 7, 7) conv: 224 / 32
FRAMES_PER_CUBE = 1  # frames per focus cube (K); the official model crops one frame per step

# Official checkpoint entries the deployed model does not use: ImageNet heads of the two
# backbones and the auxiliary heads of the training loss. Dropped by name, never by a
# non-strict load, so every other key must match exactly.
DROPPED_PREFIXES: tuple[str, ...] = (
    "global_CNN.classifier.",
    "local_CNN.fc.",
    "global_CNN_fc.",
    "local_CNN_fc.",
    "aux_fc.",
)

# State-dict prefix -> part name, for error messages.
PARTS: dict[str, str] = {
    "global_CNN": "glance",
    "spatial_policy": "policy",
    "temporal_policy": "policy",
    "local_CNN": "local",
    "classifier": "classifier",
}

# opts.py arguments that AdaFocus(args) reads but that do not change the network.
_IGNORED_OFFICIAL_ARGS = ("batch_size", "device")


@dataclass(frozen=True)
class AdaFocusV3Config:
    """``AdaFocus(args)`` arguments (opts.py names and defaults; num_classes 200 = ActivityNet).

    ``fc_dropout`` and ``dataset`` only concern training heads / a sanity check upstream and are
    kept so an official configuration round-trips. ``glance_arch`` must be ``"mbv2"``.
    """

    num_segments: int = 48
    num_glance_segments: int = 16
    num_focus_segments: int = 16
    num_classes: int = 200
    input_size: int = 224
    patch_size: int = 96
    stn_hidden_dim: int = 128
    temporal_hidden_dim: int = 64
    temperature: float = 1.0
    dropout: float = 0.2
    fc_dropout: float = 0.2
    glance_arch: str = "mbv2"
    dataset: str = "actnet"
    # Not official arguments: the official network is their default. Other values build the small
    # models videploy trains itself (e.g. the ``adafocusv3_actions`` zoo entry).
    glance_width_mult: float = 1.0  # MobileNetV2 width multiplier of the glance network
    glance_size: int | None = None  # the glance sees frames average-pooled to this size (None: input_size)
    local_block: str = "Bottleneck"  # local ResNet: block, blocks per stage, stem width
    local_layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    local_width: int = 64
    mlp_width: int = MLP_WIDTH  # the classifier's per-frame feature width
    min_patch_pixels: int = MIN_PATCH_PIXELS  # range of the crop box side, in input pixels
    max_patch_pixels: int = MAX_PATCH_PIXELS

    def __post_init__(self) -> None:
        def fail(field: str, why: str) -> VideployError:
            return VideployError(f"AdaFocusV3: {field}={getattr(self, field)!r} {why}")

        if self.glance_arch != "mbv2":
            raise fail("glance_arch", "is not supported: videploy builds the MobileNetV2 glance network only; use glance_arch='mbv2'")
        object.__setattr__(self, "local_layers", tuple(self.local_layers))  # JSON gives a list
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) or self.input_size < 32 or self.input_size % 32:
            raise fail("input_size", "must be a multiple of 32 (the glance network's stride); the official value is 224")
        g = self.glance_resolution
        if isinstance(g, bool) or not isinstance(g, int) or g < 32 or g % 32 or self.input_size % g:
            raise fail("glance_size", f"must be a multiple of 32 that divides input_size={self.input_size} (frames are average-pooled by an integer factor), or None")
        if not 32 <= self.min_patch_pixels <= self.max_patch_pixels <= self.input_size:
            raise fail("min_patch_pixels", f"and max_patch_pixels={self.max_patch_pixels} must satisfy 32 <= min <= max <= input_size={self.input_size}")
        for name in ("num_segments", "num_glance_segments", "num_focus_segments", "num_classes", "stn_hidden_dim", "temporal_hidden_dim", "mlp_width", "local_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise fail(name, "must be a positive integer")
        if isinstance(self.patch_size, bool) or not isinstance(self.patch_size, int) or self.patch_size < 32:
            raise fail("patch_size", "must be an integer >= 32 (the local ResNet-50 downsamples by 32); official values are 96, 128, 160, 192")
        if len(_glance_indices(self.num_segments, self.num_glance_segments)) != self.num_glance_segments:
            raise fail(
                "num_glance_segments",
                f"does not fit num_segments={self.num_segments}: the official evaluation glances at frames "
                f"range(1, num_segments, num_segments // num_glance_segments), which must give exactly "
                f"num_glance_segments frames (e.g. 48 segments with 16, 12 with 4)",
            )
        if self.num_focus_segments > self.num_segments:
            raise fail("num_focus_segments", f"must be at most num_segments={self.num_segments} (each focus step takes a distinct frame)")
        if not self.temperature > 0:
            raise fail("temperature", "must be positive")
        if self.dataset == "fcvid" and self.num_classes != 239:
            raise fail("num_classes", "must be 239 for dataset='fcvid' (as the official code asserts)")


    @property
    def glance_resolution(self) -> int:
        return self.input_size if self.glance_size is None else self.glance_size

    @property
    def glance_map_size(self) -> int:
        return self.glance_resolution // 32


def _glance_indices(num_segments: int, num_glance_segments: int) -> tuple[int, ...]:
    """The official evaluation's glance frames: every (S // Tg)-th frame starting at 1."""
    if num_glance_segments < 1 or num_segments // num_glance_segments < 1:
        return ()
    return tuple(range(num_segments)[1 :: num_segments // num_glance_segments])


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def convert_official_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """An official ``AdaFocus`` state dict (container already unwrapped) -> ours: a new dict
    without the training-only heads (:data:`DROPPED_PREFIXES`); every other key as is."""
    return {k: v for k, v in state_dict.items() if not k.startswith(DROPPED_PREFIXES)}


def _indexed_count(state_dict: Mapping[str, Any], prefix: str) -> int:
    ids = {int(k[len(prefix) :].split(".", 1)[0]) for k in state_dict if k.startswith(prefix) and k[len(prefix) :].split(".", 1)[0].isdigit()}
    return max(ids) + 1 if ids else 0


def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The ``AdaFocus(args)`` arguments a state dict pins down (for mismatch messages)."""
    sd = state_dict
    out: dict[str, Any] = {}
    for key in ("classifier.global_classifiers.0.1.weight", "classifier.local_classifiers.0.1.weight", "global_CNN_fc.1.weight", "aux_fc.weight"):
        if key in sd:
            out["num_classes"] = int(sd[key].shape[0])
            break
    tg = _indexed_count(sd, "classifier.global_classifiers.")
    if tg:
        out["num_glance_segments"] = tg
    tf = _indexed_count(sd, "classifier.local_classifiers.")
    if tf:
        out["num_focus_segments"] = tf
    if "spatial_policy.encoder.0.weight" in sd:
        out["stn_hidden_dim"] = int(sd["spatial_policy.encoder.0.weight"].shape[0])
    if "temporal_policy.Tconv.0.weight" in sd:
        out["temporal_hidden_dim"] = int(sd["temporal_policy.Tconv.0.weight"].shape[0])
    if "global_CNN.features.0.0.weight" in sd:
        out["glance_arch"] = "mbv2"
    return out


# --------------------------------------------------------------------------------------------
# The deployable graphs
# --------------------------------------------------------------------------------------------


class AdaFocusV3Glance(GraphModule):
    """Glance graph: MobileNetV2 on the Tg glance frames, global MLP, running max, exit 0.

    ``frames`` (B, Tg, 3, H, W) -> ``logits`` (B, C) [global head Tg-1 on the final running max],
    ``entropy`` (B,), ``global_state`` (B, 4096), ``featmap`` (B, Tg, 1280, 7, 7), ``global_feat`` (B, Tg, 1280).
    """

    input_names = ("frames",)
    output_names = ("logits", "entropy", "global_state", "featmap", "global_feat")

    def __init__(self, model: "AdaFocusV3") -> None:
        super().__init__()
        self.config = model.config
        self.global_CNN = model.global_CNN
        self.global_mlp = model.classifier.global_mlp
        self.head = model.classifier.global_classifiers[-1]

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b, t = frames.shape[:2]
        featmap, pooled = self.global_CNN.get_featmap(glance_input(frames.flatten(0, 1), self.config))
        z = self.global_mlp(pooled).reshape(b, t, -1)
        # The official running max over frames ends at the max over all of them (max is exact).
        state = max_over_frames(z)
        logits = self.head(state)
        return logits, entropy(logits), state, featmap.reshape(b, t, *featmap.shape[1:]), pooled.reshape(b, t, -1)

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        c = self.config
        return (torch.randn(batch_size, c.num_glance_segments, 3, c.input_size, c.input_size),)


class AdaFocusV3Policy(GraphModule):
    """Policy graph: where (spatial policy) and when (temporal policy) to look.

    ``featmap`` (B, Tg, 1280, 7, 7), ``global_feat`` (B, Tg, 1280) -> ``frame_indices`` (B, Tf, K) int64
    [indices into the S sampled frames], ``actions`` (B, Tf, 4) [y, x, scale_y, scale_x],
    ``boxes`` (B, Tf, 4) [x1, y1, x2, y2 in input pixels].
    """

    input_names = ("featmap", "global_feat")
    output_names = ("frame_indices", "actions", "boxes")

    def __init__(self, model: "AdaFocusV3") -> None:
        super().__init__()
        self.config = model.config
        self.glance_dim = model.global_CNN.last_channel
        self.spatial_policy = model.spatial_policy
        self.temporal_policy = model.temporal_policy

    def forward(self, featmap: torch.Tensor, global_feat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c = self.config
        b = featmap.shape[0]
        actions = segment_actions(self.spatial_policy(featmap.flatten(0, 1)), c.num_glance_segments, c.num_segments)  # (B, S, 4)
        _, weights_t = self.temporal_policy(global_feat.flatten(0, 1))
        idx = sample_frame_indices(weights_t, c.num_segments, c.num_glance_segments, c.num_focus_segments)  # (B, Tf)
        chosen = actions.gather(1, idx.unsqueeze(-1).expand(b, c.num_focus_segments, 4))
        x1, y1, x2, y2, _, _ = patch_box(chosen.reshape(-1, 4), c.patch_size, c.input_size, c.patch_size, c.min_patch_pixels, c.max_patch_pixels)
        boxes = torch.stack([x1, y1, x2, y2], dim=-1).reshape(b, c.num_focus_segments, 4)
        return idx.unsqueeze(-1), chosen, boxes

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        c = self.config
        tg, m = c.num_glance_segments, c.glance_map_size
        # Post-ReLU6 features are non-negative; their pooled vector is the map's mean.
        featmap = torch.rand(batch_size, tg, self.glance_dim, m, m) * 6.0
        return featmap, featmap.mean(dim=(3, 4))


class AdaFocusV3Local(GraphModule):
    """Local-encoder graph: one focus step for each video of the batch, each at its own step.

    ``frames`` (B, K, 3, H, W) [the cube's frames], ``action`` (B, 4), ``step`` (B,) int64 in [0, Tf),
    ``local_state`` (B, 4096) [zeros before step 0], ``global_state`` (B, 4096) -> ``logits`` (B, C)
    [exit step+1], ``entropy`` (B,), ``next_local_state`` (B, 4096).

    The crop's sampling grid is built from elementwise ops + 4-D GridSample. The Tf local heads
    are stacked and gathered by ``step`` (inference only: their dropout is the identity).
    """

    input_names = ("frames", "action", "step", "local_state", "global_state")
    output_names = ("logits", "entropy", "next_local_state")

    def __init__(self, model: "AdaFocusV3") -> None:
        super().__init__()
        self.config = model.config
        self.local_CNN = model.local_CNN
        self.local_mlp = model.classifier.local_mlp
        self.heads = model.classifier.local_classifiers

    def forward(
        self,
        frames: torch.Tensor,
        action: torch.Tensor,
        step: torch.Tensor,
        local_state: torch.Tensor,
        global_state: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        c = self.config
        b, k = frames.shape[:2]
        crops = action.unsqueeze(1).expand(b, k, 4).reshape(-1, 4)
        patches = crop_patches(frames.flatten(0, 1), crops, c)
        z = max_over_frames(self.local_mlp(self.local_CNN.get_featvec(patches)).reshape(b, k, -1))
        # Running max; exact at step 0 with a zero state because z is post-ReLU (>= 0).
        state = torch.maximum(z, local_state)
        feat = torch.cat([state, global_state], dim=1)  # (B, 2 * mlp_width)
        if exporting() or feat.device.type == "meta":
            # the exported graph: heads stacked and gathered per row by `step` (one graph serves every step)
            weight = torch.stack([h[1].weight for h in self.heads])  # (Tf, C, 8192)
            bias = torch.stack([h[1].bias for h in self.heads])  # (Tf, C)
            logits = torch.bmm(weight[step], feat.unsqueeze(-1)).squeeze(-1) + bias[step]
        else:
            # eager PyTorch, as a PyTorch user would run it: the stacked heads are kept (not re-stacked
            # per call, ~100 MB at full size) and applied as one matmul, each row picking its step's head
            weight, bias = self._stacked_heads()
            every = (feat @ weight.flatten(0, 1).T).unflatten(1, weight.shape[:2]) + bias  # (B, Tf, C)
            logits = every[torch.arange(b, device=feat.device), step]
        return logits, entropy(logits), state

    def _stacked_heads(self) -> tuple[torch.Tensor, torch.Tensor]:
        params = [p for h in self.heads for p in (h[1].weight, h[1].bias)]
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        if getattr(self, "_heads_key", None) != key or torch.is_grad_enabled():
            weight = torch.stack([h[1].weight for h in self.heads])
            bias = torch.stack([h[1].bias for h in self.heads])
            if torch.is_grad_enabled():
                return weight, bias  # training: keep the graph to the parameters, never cache
            self._heads, self._heads_key = (weight, bias), key
        return self._heads

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        c = self.config
        frames = torch.randn(batch_size, FRAMES_PER_CUBE, 3, c.input_size, c.input_size)
        action = torch.rand(batch_size, 4)
        step = torch.arange(batch_size, dtype=torch.int64) % c.num_focus_segments
        return frames, action, step, torch.rand(batch_size, c.mlp_width), torch.rand(batch_size, c.mlp_width)


def glance_input(frames: torch.Tensor, config: AdaFocusV3Config) -> torch.Tensor:
    """(N, 3, H, W) input frames -> what the glance network sees: average-pooled to ``glance_size``
    when the configuration asks for a low-resolution glance (an exact integer factor)."""
    factor = config.input_size // config.glance_resolution
    return F.avg_pool2d(frames, factor) if factor > 1 else frames


def crop_patches(frames: torch.Tensor, actions: torch.Tensor, config: AdaFocusV3Config) -> torch.Tensor:
    """The local encoder's patches (N, 3, P, P) of frames (N, 3, H, W) at actions (N, 4)."""
    c = config
    return get_patch_grid_scalexy(frames, actions, c.patch_size, c.input_size, c.patch_size, c.min_patch_pixels, c.max_patch_pixels)


def segment_actions(glance_actions: torch.Tensor, num_glance_segments: int, num_segments: int) -> torch.Tensor:
    """Spatial actions (B*Tg, 4) of the glance frames -> (B, S, 4) for all sampled frames, by linear
    interpolation along time (align_corners=False), as the official forward does."""
    a = glance_actions.reshape(-1, num_glance_segments, 4).permute(0, 2, 1)
    a = F.interpolate(a, size=num_segments, mode="linear", align_corners=False)
    return a.permute(0, 2, 1)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class AdaFocusV3(VideoModel):
    """AdaFocusV3 / Uni-AdaFocus with the MobileNetV2 glance and ResNet-50 local networks.

    ``forward(video)``: video (B, S, 3, H, W) or the official (B, S*3, H, W), normalised frames
    -> logits of every exit (B, Tf+1, C): exit 0 the glance (global head Tg-1), exit j local head
    j-1 -- the official evaluation's ``cat_logits.view(B, -1, C)[:, Tg-1:]``.

    ``forward`` is the evaluation forward in either mode: the official training forward (random
    glance offsets, a second pass on random crops, the auxiliary heads dropped from checkpoints)
    is a training recipe, not part of the deployed model.
    """

    family: ClassVar[str] = "adafocusv3"
    input_names = ("video",)
    output_names = ("logits",)

    def __init__(self, config: AdaFocusV3Config | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.config = config if config is not None else AdaFocusV3Config(**kwargs)
        c = self.config
        self.global_CNN = MobileNetV2(n_class=1000, input_size=c.glance_resolution, width_mult=c.glance_width_mult)
        # ImageNet heads are not part of the video model (dropped from official checkpoints).
        self.global_CNN.classifier = nn.Identity()
        self.local_CNN = ResNet(c.local_block, c.local_layers, width=c.local_width)
        local_dim = self.local_CNN.feature_dim
        self.local_CNN.fc = nn.Identity()
        glance_dim = self.global_CNN.last_channel
        self.spatial_policy = SpatialPolicy(glance_dim, c.stn_hidden_dim, c.num_glance_segments, c.glance_map_size)
        self.temporal_policy = TemporalPolicy(glance_dim, c.temporal_hidden_dim, c.num_glance_segments, c.temperature)
        self.classifier = PoolingClassifier(
            glance_dim, local_dim, c.num_glance_segments, c.num_focus_segments, c.num_classes, c.dropout, mlp_width=c.mlp_width
        )

    @property
    def glance_indices(self) -> tuple[int, ...]:
        return _glance_indices(self.config.num_segments, self.config.num_glance_segments)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        c = self.config
        s, tg, tf, size = c.num_segments, c.num_glance_segments, c.num_focus_segments, c.input_size
        b = video.shape[0]
        frames = video.reshape(b, s, 3, size, size)
        glance_index = torch.tensor(self.glance_indices, dtype=torch.int64, device=video.device)
        glance = frames.index_select(1, glance_index).flatten(0, 1)
        featmap, global_feat = self.global_CNN.get_featmap(glance_input(glance, c))
        actions = segment_actions(self.spatial_policy(featmap), tg, s).reshape(-1, 4)  # (B*S, 4)
        _, weights_t = self.temporal_policy(global_feat)
        focus = policy_sample_indices(weights_t, s, tg, tf, rand_sample=False)  # (B*Tf,) rows of B*S
        patches = crop_patches(frames.flatten(0, 1)[focus], actions[focus], c)
        local_feat = self.local_CNN.get_featvec(patches)
        logits, _ = self.classifier(global_feat.reshape(b, tg, -1), local_feat.reshape(b, tf, -1))
        return logits.reshape(b, tg + tf, -1)[:, tg - 1 :]

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        c = self.config
        return (torch.randn(batch_size, c.num_segments, 3, c.input_size, c.input_size),)

    # --- deployment ----------------------------------------------------------------------
    def deploy_graphs(self) -> dict[str, GraphModule]:
        """Fresh glance / policy / local modules sharing this model's parameters (run order)."""
        graphs: dict[str, GraphModule] = {
            "glance": AdaFocusV3Glance(self),
            "policy": AdaFocusV3Policy(self),
            "local": AdaFocusV3Local(self),
        }
        for g in graphs.values():
            g.training = self.training  # the wrappers' own flag; submodules are shared as they are
        return graphs

    def preprocessing(self) -> Preprocessing:
        """The official validation transform (main.py / ops/dataset.py): TSN segment sampling with
        the centre frame of each of S equal segments (``random_shift=False``), short side resized to
        ``scale_size = input_size * 256 // 224``, centre crop ``input_size``, RGB / 255, ImageNet mean/std."""
        c = self.config
        return Preprocessing(
            num_frames=c.num_segments,
            sampling="segments",
            crop_size=(c.input_size, c.input_size),
            resize_short=c.input_size * 256 // 224,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            scale=1.0 / 255.0,
        )

    def early_exit(self) -> EarlyExit:
        c = self.config
        return EarlyExit(
            num_segments=c.num_segments,
            glance_indices=self.glance_indices,
            num_steps=c.num_focus_segments,
            frames_per_cube=FRAMES_PER_CUBE,
            patch_size=c.patch_size,
            exit_gflops=tuple(self.exit_gflops()),
            thresholds=None,
            state_size=c.mlp_width,
        )

    # --- cost ----------------------------------------------------------------------------
    def part_gflops(self) -> dict[str, float]:
        """GMACs of each part, counted with :func:`videploy.models.flops.count_gflops` on one video.

        Graphs: ``glance`` (per video), ``policy`` (per video), ``local`` (per cube / step).
        Pieces: ``global_CNN`` (Tg frames), ``global_mlp`` (Tg frames), ``global_classifier`` (one
        head), ``spatial_policy``, ``temporal_policy``, ``local_CNN``, ``local_mlp``,
        ``local_classifier`` (one cube / head).
        """
        return dict(_part_gflops(self.config))

    def exit_gflops(self) -> list[float]:
        """Cumulative GMACs per video at each exit: exit 0 = glance; exit t adds the policy and t
        local steps (the official ``get_flops`` accounting)."""
        p = dict(_part_gflops(self.config))
        return [p["glance"] + (p["policy"] + t * p["local"] if t else 0.0) for t in range(self.config.num_focus_segments + 1)]


@functools.lru_cache(maxsize=16)
def _part_gflops(config: AdaFocusV3Config) -> tuple[tuple[str, float], ...]:
    # Counted on the meta device: same shapes, no arithmetic, no weights needed.
    from videploy.models.flops import count_gflops

    meta = torch.device("meta")
    with meta:
        model = AdaFocusV3(config).eval()
    graphs = model.deploy_graphs()
    c = config
    tg, k, size, p = c.num_glance_segments, FRAMES_PER_CUBE, c.glance_resolution, c.patch_size
    gdim, ldim, m = model.global_CNN.last_channel, model.local_CNN.config.width * 8 * (4 if c.local_block == "Bottleneck" else 1), c.glance_map_size

    def count(module: nn.Module, *inputs: torch.Tensor) -> float:
        return count_gflops(module, tuple(x.to(meta) for x in inputs))

    cls = model.classifier
    parts = {
        "glance": count(graphs["glance"], *graphs["glance"].example_inputs(1)),
        "policy": count(graphs["policy"], *graphs["policy"].example_inputs(1)),
        "local": count(graphs["local"], *graphs["local"].example_inputs(1)),
        "global_CNN": count(model.global_CNN, torch.empty(tg, 3, size, size)),
        "global_mlp": count(cls.global_mlp, torch.empty(tg, gdim)),
        "global_classifier": count(cls.global_classifiers[-1], torch.empty(1, c.mlp_width)),
        "spatial_policy": count(model.spatial_policy, torch.empty(tg, gdim, m, m)),
        "temporal_policy": count(model.temporal_policy, torch.empty(tg, gdim)),
        "local_CNN": count(model.local_CNN, torch.empty(k, 3, p, p)),
        "local_mlp": count(cls.local_mlp, torch.empty(k, ldim)),
        "local_classifier": count(cls.local_classifiers[-1], torch.empty(1, 2 * c.mlp_width)),
    }
    return tuple(parts.items())


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------


def build(**kwargs: Any) -> AdaFocusV3:
    """``create("adafocusv3", **official_args)``: AdaFocus(args) keyword names (opts.py)."""
    for name in _IGNORED_OFFICIAL_ARGS:
        kwargs.pop(name, None)
    known = {f.name for f in fields(AdaFocusV3Config)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise VideployError(
            f"AdaFocusV3: unknown argument(s) {unknown}; the official AdaFocus(args) arguments are {sorted(known)} "
            f"(aliases: num_frames -> num_segments, image_size -> input_size)"
        )
    return AdaFocusV3(AdaFocusV3Config(**kwargs))


FAMILY = register_family(
    Family(
        name="adafocusv3",
        build=build,
        convert=convert_official_state_dict,
        infer=infer_config,
        aliases={"num_frames": "num_segments", "image_size": "input_size"},
        parts=PARTS,
    ),
    description="AdaFocusV3 (Uni-AdaFocus): MobileNetV2 glance + spatial/temporal policy + ResNet-50 local encoder, early exit",
)

register(
    Entry(
        name="adafocusv3_mbv2_r50",
        family=FAMILY,
        defaults={
            "num_segments": 48,
            "num_glance_segments": 16,
            "num_focus_segments": 16,
            "num_classes": 200,
            "input_size": 224,
            # The official early-exit evaluation (test_early_exit_uni_adafocus.py) reports patch 128.
            "patch_size": 128,
            "stn_hidden_dim": 128,
            "temporal_hidden_dim": 64,
            "temperature": 1.0,
            "dropout": 0.2,
            "fc_dropout": 0.2,
            "glance_arch": "mbv2",
        },
        description="AdaFocusV3 MobileNetV2 + ResNet-50, 48 segments, 16 glance + 16 focus frames, 128x128 patches, ActivityNet (200 classes)",
    )
)

register_family(
    Family(name="spatial_policy", build=SpatialPolicy, component=True),
    description="AdaFocusV3 spatial policy (where to look)",
)
register_family(
    Family(name="temporal_policy", build=TemporalPolicy, component=True),
    description="AdaFocusV3 temporal policy (when to look)",
)
register_family(
    Family(name="pooling_classifier", build=PoolingClassifier, component=True),
    description="AdaFocusV3 pooling classifier (all exits)",
)

# The small model videploy trains on its own generated action videos (videploy.datasets.actions):
# a quarter-width MobileNetV2 glancing at 64x64 frames, a narrow ResNet on 64x64 patches cropped from
# boxes of 56 px up to the whole 128 px frame (the official 96..224 of 224, in proportion).
register(
    Entry(
        name="adafocusv3_actions",
        family=FAMILY,
        defaults={
            "num_segments": 16,
            "num_glance_segments": 2,
            "num_focus_segments": 6,
            "num_classes": 10,
            "input_size": 128,
            "patch_size": 64,
            "stn_hidden_dim": 32,
            "temporal_hidden_dim": 32,
            "temperature": 1.0,
            "dropout": 0.2,
            "fc_dropout": 0.2,
            "glance_arch": "mbv2",
            "dataset": "actions",
            "glance_width_mult": 0.25,
            "glance_size": 64,
            "local_block": "BasicBlock",
            "local_layers": (1, 1, 1, 1),
            "local_width": 32,
            "mlp_width": 128,
            "min_patch_pixels": 56,
            "max_patch_pixels": 128,
        },
        description="AdaFocusV3 tiny (MobileNetV2 x0.25 glance at 64 px, ResNet width 32 on 64 px patches of 56-128 px boxes), 16 segments, 2 glance + 6 focus frames, videploy's generated action videos (10 classes)",
    )
)
