"""Video-FocalNet (Wasim et al., ICCV 2023): spatio-temporal focal modulation for action recognition.

A four-stage hierarchical network. Every stage is a stack of blocks whose token mixer is a
*spatio-temporal focal modulation*: per frame, a stack of depthwise 2-D convolutions (growing
kernels) aggregates spatial context; per spatial location, a stack of dense 1-D convolutions over
time aggregates temporal context; both are gated, summed with a global (mean) level, projected
to a spatial and a temporal modulator, and multiplied into a query. Frames are processed as a
(batch * frames) image batch; the temporal path regroups the tokens as (batch * H * W, frames).
The video logit is the head applied to the mean of the per-frame pooled features.

Module attribute names (and therefore state-dict keys) are the official ones
(``classification/videofocalnet.py`` of TalalWasim/Video-FocalNets), so official checkpoints
load strictly, and the forward is numerically the official eval forward. Unlike the official
code, the forward keeps no per-call state on modules and never branches on tensor values, so
``torch.export`` sees one graph with a symbolic batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import torch
import torch.utils.checkpoint
from torch import nn
from torch.nn import functional as F

from videploy.bundle.manifest import Preprocessing
from videploy.errors import VideployError
from videploy.models.base import VideoModel, exporting
from videploy.models.checkpoint.unwrapping import strip_wrapper_prefixes
from videploy.models.registry import Entry, Family, register, register_family

__all__ = [
    "EvalProtocol",
    "VideoFocalNet",
    "VideoFocalNetConfig",
    "convert_official_state_dict",
    "infer_config",
]

# The official modulation hard-codes a kernel growth of 2 per focal level (it is a constructor
# argument of the modulation layer that VideoFocalNet never passes).
FOCAL_FACTOR = 2

# Official evaluation normalisation (mmaction img_norm_cfg, RGB, 0-255 pixel units).
MEAN_255 = (123.675, 116.28, 103.53)
STD_255 = (58.395, 57.12, 57.375)


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise VideployError(f"VideoFocalNetConfig.{name} must be an int or an (H, W) pair, got {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (int(value[0]), int(value[1]))
    raise VideployError(f"VideoFocalNetConfig.{name} must be an int or an (H, W) pair of ints, got {value!r}")


@dataclass(frozen=True)
class VideoFocalNetConfig:
    """The official ``VideoFocalNet.__init__`` keyword arguments, with the official defaults.

    ``norm_layer`` (a class; the official default ``nn.LayerNorm`` is the only one used anywhere)
    is not a field, so the config stays JSON-able; the builder accepts ``norm_layer=nn.LayerNorm``.
    Sequences may be given as lists or tuples (stored as tuples). ``img_size`` and ``patch_size``
    may be an int or an (H, W) pair; ``img_size`` only sizes bookkeeping and example inputs (the
    forward uses the actual frame size), ``num_frames`` is static and must match the input.
    """

    img_size: int | tuple[int, int] = 224
    patch_size: int | tuple[int, int] = 4
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    patch_norm: bool = True
    use_checkpoint: bool = False
    focal_levels: tuple[int, ...] = (2, 2, 2, 2)
    focal_windows: tuple[int, ...] = (3, 3, 3, 3)
    use_conv_embed: bool = False
    use_layerscale: bool = False
    layerscale_value: float = 1e-4
    use_postln: bool = False
    use_postln_in_modulation: bool = False
    normalize_modulator: bool = False
    num_frames: int = 8
    tubelet_size: int = 1

    def __post_init__(self) -> None:
        def fail(name: str, message: str) -> VideployError:
            return VideployError(f"VideoFocalNetConfig.{name} {message}")

        for name in ("depths", "focal_levels", "focal_windows"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not value or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
                raise fail(name, f"must be a non-empty list of ints (one per stage), got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        for name in ("img_size", "patch_size"):
            value = getattr(self, name)
            _pair(value, name)  # validates
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(int(v) for v in value))
        n = len(self.depths)
        for name in ("focal_levels", "focal_windows"):
            if len(getattr(self, name)) != n:
                raise fail(name, f"must have one entry per stage (len(depths) = {n}), got {getattr(self, name)!r}")
        for name in ("in_chans", "num_classes", "embed_dim", "num_frames", "tubelet_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail(name, f"must be an int, got {value!r}")
        if any(d < 0 for d in self.depths):
            # 0 is valid upstream: such a stage is only its patch merging
            raise fail("depths", f"must be >= 0 blocks per stage, got {self.depths}")
        if any(level < 0 for level in self.focal_levels):
            raise fail("focal_levels", f"must be >= 0, got {self.focal_levels}")
        if any(w < 1 or w % 2 == 0 for w in self.focal_windows):
            # an even kernel with padding k//2 grows the map by one per level and the official
            # forward then fails on a shape mismatch; say so before building
            raise fail(
                "focal_windows", f"must be odd positive kernel sizes (the official 'same' padding needs odd kernels), got {self.focal_windows}"
            )
        if self.num_classes < 0 or self.embed_dim < 1 or self.in_chans < 1:
            raise fail("num_classes/embed_dim/in_chans", "must be >= 0 / >= 1 / >= 1")
        if self.tubelet_size < 1 or self.num_frames < self.tubelet_size:
            raise fail("tubelet_size", f"must be in [1, num_frames={self.num_frames}], got {self.tubelet_size}")
        if self.tubelet_size > 1 and self.use_conv_embed:
            raise fail(
                "use_conv_embed",
                "cannot be combined with tubelet_size > 1: the official stem is then a 2-D overlapping conv that "
                "cannot take the (B, C, T, H, W) tubelet input (the official forward fails). Use one or the other.",
            )

    @property
    def img_hw(self) -> tuple[int, int]:
        return _pair(self.img_size, "img_size")

    @property
    def patch_hw(self) -> tuple[int, int]:
        return _pair(self.patch_size, "patch_size")

    @property
    def temporal_tokens(self) -> int:
        """Frames seen by the temporal convolutions (the official ``self.num_frames``)."""
        return self.num_frames // self.tubelet_size

    def stage_dims(self) -> list[int]:
        return [self.embed_dim * 2**i for i in range(len(self.depths))]


@dataclass(frozen=True)
class EvalProtocol:
    """Official test-time settings that live outside the model kwargs (the YAML's AUG/DATA/TEST keys).

    Defaults are those of every shipped official config and of the published Kinetics-400 numbers:
    ``AUG.FRAME_INTERVAL`` 4, ``TEST.NUM_CLIP`` 4 x ``TEST.NUM_CROP`` 3 (the README's evaluation
    command; the config.py defaults are 1 x 1). ``input_size`` is ``DATA.INPUT_SIZE`` (the crop the
    data pipeline produces); ``None`` means the model's ``img_size``.
    """

    frame_interval: int = 4
    num_clips: int = 4
    num_crops: int = 3
    input_size: int | None = None


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability ``drop_prob``."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SpatioTemporalFocalModulation(nn.Module):
    """Focal modulation with a parallel spatial (per frame) and temporal (per location) context path."""

    def __init__(
        self,
        dim: int,
        focal_window: int,
        focal_level: int,
        proj_drop: float = 0.0,
        use_postln_in_modulation: bool = False,
        normalize_modulator: bool = False,
        num_frames: int = 8,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.use_postln_in_modulation = use_postln_in_modulation
        self.num_frames = num_frames
        self.kernel_sizes = [FOCAL_FACTOR * k + focal_window for k in range(focal_level)]

        # Registration order fixes the state-dict order; it follows the official module.
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.act = nn.GELU()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.focal_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim, bias=False), nn.GELU()) for k in self.kernel_sizes
        )
        self.f_temporal = nn.Linear(dim, dim + focal_level + 1)
        self.h_temporal = nn.Conv1d(dim, dim, kernel_size=1)
        # temporal convs are dense over channels (no groups), unlike the spatial ones
        self.focal_layers_temporal = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, k, padding=k // 2, bias=False), nn.GELU()) for k in self.kernel_sizes
        )
        if use_postln_in_modulation:
            self.ln = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B*T, H, W, C), rows b*T + t -> (B*T, H, W, C)."""
        _, H, W, C = x.shape
        T, L = self.num_frames, self.focal_level

        # temporal path: one sequence of T tokens per (video, location)
        xt = x.reshape(-1, T, H, W, C).permute(0, 2, 3, 1, 4).reshape(-1, T, C)
        if exporting():
            mod_t = self._temporal_modulator_channels_last(self.f_temporal(xt), H, W)
        else:
            xt = self.f_temporal(xt).permute(0, 2, 1).contiguous()  # (B*H*W, C + L + 1, T)
            ctx_t, gates_t = torch.split(xt, (C, L + 1), 1)
            ctx_all_t: torch.Tensor | float = 0.0
            for level, layer in enumerate(self.focal_layers_temporal):
                ctx_t = layer(ctx_t)
                ctx_all_t = ctx_all_t + ctx_t * gates_t[:, level : level + 1]
            ctx_all_t = ctx_all_t + self.act(ctx_t.mean(2, keepdim=True)) * gates_t[:, L:]
            if self.normalize_modulator:
                ctx_all_t = ctx_all_t / (L + 1)
            mod_t = self.h_temporal(ctx_all_t)  # (B*H*W, C, T) -> (B*T, C, H, W)
            mod_t = mod_t.reshape(-1, H, W, C, T).permute(0, 4, 3, 1, 2).reshape(-1, C, H, W)

        # spatial path: one image per (video, frame)
        xs = self.f(x).permute(0, 3, 1, 2).contiguous()  # (B*T, 2C + L + 1, H, W)
        q, ctx, gates = torch.split(xs, (C, C, L + 1), 1)
        ctx_all: torch.Tensor | float = 0.0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            ctx_all = ctx_all + ctx * gates[:, level : level + 1]
        # mean over H then over W, as upstream (keeps the float32 summation order)
        ctx_all = ctx_all + self.act(ctx.mean(2, keepdim=True).mean(3, keepdim=True)) * gates[:, L:]

        if self.normalize_modulator:
            ctx_all = ctx_all / (L + 1)

        out = (q * self.h(ctx_all) * mod_t).permute(0, 2, 3, 1).contiguous()
        if self.use_postln_in_modulation:
            out = self.ln(out)
        return self.proj_drop(self.proj(out))

    def _temporal_modulator_channels_last(self, xt: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """The temporal path for export, the same computation laid out (B*H*W, T, C): each temporal
        convolution becomes one MatMul over the k shifted copies of the sequence (onnxruntime runs
        Conv1d over 8 frames with 768 channels at a fraction of its MatMul speed: the convolutions
        were half of Video-FocalNet-T's time), and the (B*H*W, C, T) transposes disappear.
        ``xt``: f_temporal's output (B*H*W, T, C + L + 1) -> the modulator (B*T, C, H, W)."""
        C, T, L = self.dim, self.num_frames, self.focal_level
        ctx_t, gates_t = torch.split(xt, (C, L + 1), 2)
        ctx_all_t: torch.Tensor | float = 0.0
        for level, layer in enumerate(self.focal_layers_temporal):
            conv = layer[0]
            k, pad = conv.kernel_size[0], conv.padding[0]
            padded = F.pad(ctx_t, (0, 0, pad, pad))  # zero frames before and after, as the conv pads
            windows = torch.cat([padded[:, j : j + T] for j in range(k)], dim=2)  # (N, T, k*C), tap-major
            weight = conv.weight.permute(2, 1, 0).reshape(k * conv.in_channels, conv.out_channels)  # [j*C + c, o] = w[o, c, j]
            ctx_t = layer[1](windows @ weight)
            ctx_all_t = ctx_all_t + ctx_t * gates_t[:, :, level : level + 1]
        ctx_all_t = ctx_all_t + self.act(ctx_t.mean(1, keepdim=True)) * gates_t[:, :, L:]
        if self.normalize_modulator:
            ctx_all_t = ctx_all_t / (L + 1)
        h = self.h_temporal
        mod_t = ctx_all_t @ h.weight[:, :, 0].T + h.bias  # (N, T, C)
        return mod_t.reshape(-1, H, W, T, C).permute(0, 3, 4, 1, 2).reshape(-1, C, H, W)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_sizes={self.kernel_sizes}, num_frames={self.num_frames}"


class VideoFocalNetBlock(nn.Module):
    """Pre-norm (or post-norm with ``use_postln``) modulation + MLP residual block."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        focal_level: int = 1,
        focal_window: int = 3,
        use_layerscale: bool = False,
        layerscale_value: float = 1e-4,
        use_postln: bool = False,
        use_postln_in_modulation: bool = False,
        normalize_modulator: bool = False,
        num_frames: int = 8,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.use_postln = use_postln
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = SpatioTemporalFocalModulation(
            dim,
            focal_window=focal_window,
            focal_level=focal_level,
            proj_drop=drop,
            use_postln_in_modulation=use_postln_in_modulation,
            normalize_modulator=normalize_modulator,
            num_frames=num_frames,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.gamma_1: nn.Parameter | float = 1.0
        self.gamma_2: nn.Parameter | float = 1.0
        if use_layerscale:
            self.gamma_1 = nn.Parameter(layerscale_value * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layerscale_value * torch.ones(dim))

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """``x``: (B*T, H*W, C) tokens, row-major over (h, w)."""
        _, _, C = x.shape
        shortcut = x
        y = x if self.use_postln else self.norm1(x)
        y = self.modulation(y.reshape(-1, H, W, C)).reshape(-1, H * W, C)
        if self.use_postln:
            y = self.norm1(y)
        x = shortcut + self.drop_path(self.gamma_1 * y)
        y = self.norm2(self.mlp(x)) if self.use_postln else self.mlp(self.norm2(x))
        return x + self.drop_path(self.gamma_2 * y)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, input_resolution={self.input_resolution}"


class PatchEmbed(nn.Module):
    """Stem (``is_stem``) or stride-2 patch merging between stages: conv, tokens, optional LayerNorm."""

    def __init__(
        self,
        img_size: tuple[int, int],
        patch_size: int | tuple[int, int] = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        use_conv_embed: bool = False,
        norm: bool = True,
        is_stem: bool = False,
        tubelet_size: int = 1,
    ) -> None:
        super().__init__()
        ph, pw = _pair(patch_size, "patch_size")
        self.img_size = img_size
        self.patch_size = (ph, pw)
        self.patches_resolution = [img_size[0] // ph, img_size[1] // pw]
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.tubelet_size = tubelet_size
        if use_conv_embed:
            # overlapping convs; upstream ignores patch_size here (stem 7/4/2, merging 3/2/1)
            kernel, stride, padding = (7, 4, 2) if is_stem else (3, 2, 1)
            self.proj: nn.Module = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel, stride=stride, padding=padding)
        elif tubelet_size == 1:
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=(ph, pw), stride=(ph, pw))
        else:
            self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=(tubelet_size, ph, pw), stride=(tubelet_size, ph, pw))
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(N, C, H, W) -> (N, H'*W', C'); with tubelets (B, T, C, H, W) -> (B*T', H'*W', C'), rows b*T' + t'."""
        if self.tubelet_size > 1:
            x = self.proj(x.permute(0, 2, 1, 3, 4))  # (B, C', T', H', W')
            x = x.permute(0, 2, 1, 3, 4)
            x = x.reshape(-1, x.shape[2], x.shape[3], x.shape[4])
        else:
            x = self.proj(x)
        H, W = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return x, H, W


class BasicLayer(nn.Module):
    """One stage: ``depth`` blocks, then (except in the last stage) a stride-2 patch merging."""

    def __init__(
        self,
        dim: int,
        out_dim: int | None,
        input_resolution: tuple[int, int],
        depth: int,
        mlp_ratio: float,
        drop: float,
        drop_path: Sequence[float],
        downsample: bool,
        use_checkpoint: bool,
        focal_level: int,
        focal_window: int,
        use_conv_embed: bool,
        use_layerscale: bool,
        layerscale_value: float,
        use_postln: bool,
        use_postln_in_modulation: bool,
        normalize_modulator: bool,
        num_frames: int,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            VideoFocalNetBlock(
                dim=dim,
                input_resolution=input_resolution,
                mlp_ratio=mlp_ratio,
                drop=drop,
                drop_path=drop_path[i],
                focal_level=focal_level,
                focal_window=focal_window,
                use_layerscale=use_layerscale,
                layerscale_value=layerscale_value,
                use_postln=use_postln,
                use_postln_in_modulation=use_postln_in_modulation,
                normalize_modulator=normalize_modulator,
                num_frames=num_frames,
            )
            for i in range(depth)
        )
        self.downsample: PatchEmbed | None = None
        if downsample:
            assert out_dim is not None
            # the merging always has a LayerNorm upstream (patch_norm only concerns the stem)
            self.downsample = PatchEmbed(
                img_size=input_resolution,
                patch_size=2,
                in_chans=dim,
                embed_dim=out_dim,
                use_conv_embed=use_conv_embed,
                norm=True,
                is_stem=False,
            )

    def forward(self, x: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, int, int]:
        for blk in self.blocks:
            if self.use_checkpoint and self.training:
                x = torch.utils.checkpoint.checkpoint(blk, x, H, W, use_reentrant=False)
            else:
                x = blk(x, H, W)
        if self.downsample is None:
            return x, H, W
        x = x.transpose(1, 2).reshape(x.shape[0], -1, H, W)
        return self.downsample(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, input_resolution={self.input_resolution}, depth={self.depth}"


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class VideoFocalNet(VideoModel):
    """Video-FocalNet classifier: ``forward(video)`` with video (B, T, C, H, W) -> logits (B, num_classes).

    ``T`` must equal ``config.num_frames`` (static: the temporal convolutions regroup the frame
    batch by it); B, H and W are free (H, W must survive the stem and three stride-2 mergings).
    """

    family = "video_focalnet"
    input_names = ("video",)
    output_names = ("logits",)

    def __init__(self, config: VideoFocalNetConfig | None = None, eval_protocol: EvalProtocol | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else VideoFocalNetConfig()
        self.config = cfg
        self.eval_protocol = eval_protocol if eval_protocol is not None else EvalProtocol()
        dims = cfg.stage_dims()
        self.num_layers = len(cfg.depths)
        self.embed_dim = dims
        self.num_features = dims[-1]
        self.tubelet_size = cfg.tubelet_size
        self.num_frames = cfg.temporal_tokens  # upstream meaning: temporal tokens per video

        self.patch_embed = PatchEmbed(
            img_size=cfg.img_hw,
            patch_size=cfg.patch_hw,
            in_chans=cfg.in_chans,
            embed_dim=dims[0],
            use_conv_embed=cfg.use_conv_embed,
            norm=cfg.patch_norm,
            is_stem=True,
            tubelet_size=cfg.tubelet_size,
        )
        self.patches_resolution = self.patch_embed.patches_resolution
        self.pos_drop = nn.Dropout(p=cfg.drop_rate)

        # stochastic depth decays linearly over all blocks; computed on the CPU so that building
        # under a meta / cuda default device gives the same rates
        dpr = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            last = i == self.num_layers - 1
            start = sum(cfg.depths[:i])
            self.layers.append(
                BasicLayer(
                    dim=dims[i],
                    out_dim=None if last else dims[i + 1],
                    input_resolution=(self.patches_resolution[0] // 2**i, self.patches_resolution[1] // 2**i),
                    depth=cfg.depths[i],
                    mlp_ratio=cfg.mlp_ratio,
                    drop=cfg.drop_rate,
                    drop_path=dpr[start : start + cfg.depths[i]],
                    downsample=not last,
                    use_checkpoint=cfg.use_checkpoint,
                    focal_level=cfg.focal_levels[i],
                    focal_window=cfg.focal_windows[i],
                    use_conv_embed=cfg.use_conv_embed,
                    use_layerscale=cfg.use_layerscale,
                    layerscale_value=cfg.layerscale_value,
                    use_postln=cfg.use_postln,
                    use_postln_in_modulation=cfg.use_postln_in_modulation,
                    normalize_modulator=cfg.normalize_modulator,
                    num_frames=self.num_frames,
                )
            )
        self.norm = nn.LayerNorm(self.num_features)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.head: nn.Module = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    # ---- forward -------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (B*T, C, H, W) (or tubelet clips (B, T, C, H, W)) -> pooled features (B*T', C_last)."""
        x, H, W = self.patch_embed(x)
        x = self.pos_drop(x)
        for layer in self.layers:
            x, H, W = layer(x, H, W)
        x = self.norm(x)
        return torch.flatten(self.avgpool(x.transpose(1, 2)), 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.dim() != 5:
            raise VideployError(f"VideoFocalNet expects a video (B, T, C, H, W), got a tensor of shape {tuple(video.shape)}")
        _, T, C, H, W = video.shape
        if T != self.config.num_frames:
            raise VideployError(
                f"VideoFocalNet was built for num_frames={self.config.num_frames} but got {T} frames; "
                f"sample that many frames or build the model with num_frames={T}"
            )
        x = video.reshape(-1, C, H, W) if self.tubelet_size == 1 else video
        x = self.forward_features(x)
        x = x.reshape(-1, self.num_frames, x.shape[-1]).mean(dim=1)  # average the frames of a video
        return self.head(x)

    # ---- deployment contract -----------------------------------------------------------------
    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        H, W = self.config.img_hw
        return (torch.randn(batch_size, self.config.num_frames, self.config.in_chans, H, W),)

    def preprocessing(self) -> Preprocessing:
        """The official evaluation pipeline (``datasets/build.py``, validation branch) for this config.

        Frames: mmaction ``SampleFrames(clip_len=1, frame_interval=AUG.FRAME_INTERVAL,
        num_clips=DATA.NUM_FRAMES, test_mode=True)``: the video is cut into ``num_frames`` equal
        segments and the frame at each segment's centre is taken (``sampling="clip"``; all shipped
        configs use ``frame_interval`` 4). Pixels: decoded RGB, short side resized to
        ``int(256 / 224 * DATA.INPUT_SIZE)`` (256 for 224 crops), centre crop ``DATA.INPUT_SIZE``,
        then ``(x - mean) / std`` with the ImageNet statistics, which upstream states in 0-255
        units (mean 123.675, 116.28, 103.53; std 58.395, 57.12, 57.375) and which are expressed
        here for pixels scaled to [0, 1] (``scale`` 1/255).

        Views: config.py defaults to ``TEST.NUM_CLIP`` 1 x ``TEST.NUM_CROP`` 1, but the published
        accuracies (README evaluation command, and the final test of official training) use
        4 clips x 3 crops with softmax scores summed over the views; that protocol is recorded in
        ``num_clips`` / ``num_crops``. Upstream runs it slightly differently from the single view:
        with 3 crops the short side is resized to the crop size itself and three crops are taken
        along the long side (``ThreeCrop``), and with several clips the frames of each clip are
        drawn by the *training* sampler (random offsets within each segment, frame interval 1).
        A deterministic runtime reproduces the single view exactly and the multi-view protocol
        in spirit (``num_clips`` evenly shifted clips).
        """
        proto = self.eval_protocol
        if proto.input_size is not None:
            crop = (int(proto.input_size), int(proto.input_size))
        else:
            crop = self.config.img_hw
        return Preprocessing(
            num_frames=self.config.num_frames,
            sampling="clip",
            crop_size=crop,
            resize_short=int(256 / 224 * min(crop)),
            # rounding only drops float noise: the 0-255 values are exactly 255 x (0.485, ...)
            mean=tuple(round(m / 255.0, 12) for m in MEAN_255),  # type: ignore[arg-type]
            std=tuple(round(s / 255.0, 12) for s in STD_255),  # type: ignore[arg-type]
            scale=1.0 / 255.0,
            layout="BTCHW",
            channel_order="RGB",
            frame_interval=proto.frame_interval,
            num_clips=proto.num_clips,
            num_crops=proto.num_crops,
        )


def _init_weights(m: nn.Module) -> None:
    # the official initialisation (only matters for training from scratch)
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# Official checkpoints
# --------------------------------------------------------------------------------------------

def convert_official_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """An official Video-FocalNet state dict in this package's key names (a new dict).

    Our module tree is the official one, so official keys are kept as they are. The official
    ``save_checkpoint`` stores ``model_without_ddp.state_dict()`` under ``"model"`` (the caller
    unwraps that container); the official model holds no buffers and keeps its per-call tensors
    (``gates``, ``modulator``, ...) as plain attributes, so a checkpoint has no key our model
    lacks. The one variation seen in the wild is a state dict saved from the
    ``DistributedDataParallel`` wrapper, whose keys all start with ``module.``; that prefix (and
    ``torch.compile``'s ``_orig_mod.``) is removed.
    """
    sd, _ = strip_wrapper_prefixes(state_dict)
    return sd


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in getattr(value, "shape", ()))


def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Official kwargs that an (official-named) state dict pins down.

    Determinable: ``num_classes``, ``embed_dim``, ``depths``, ``focal_levels``, ``focal_windows``,
    ``in_chans``, ``tubelet_size``, ``patch_size``, ``use_conv_embed``, ``patch_norm``,
    ``mlp_ratio``, ``use_layerscale``, ``use_postln_in_modulation``. Not determinable, so never
    returned: ``num_frames`` (temporal kernels do not depend on it), ``img_size``,
    ``use_postln`` and ``normalize_modulator`` (same parameters either way), ``layerscale_value``,
    dropout and drop-path rates.
    """
    sd = convert_official_state_dict(state_dict)
    out: dict[str, Any] = {}
    stem = sd.get("patch_embed.proj.weight")
    if stem is None:
        return out
    stem_shape = _shape(stem)
    out["embed_dim"] = stem_shape[0]
    out["in_chans"] = stem_shape[1]
    out["tubelet_size"] = stem_shape[2] if len(stem_shape) == 5 else 1
    out["patch_norm"] = "patch_embed.norm.weight" in sd

    depths: dict[int, int] = {}
    for key in sd:
        parts = key.split(".")
        if len(parts) > 3 and parts[0] == "layers" and parts[2] == "blocks" and parts[1].isdigit() and parts[3].isdigit():
            i, j = int(parts[1]), int(parts[3])
            depths[i] = max(depths.get(i, 0), j + 1)
    if depths:
        out["depths"] = [depths.get(i, 0) for i in range(max(depths) + 1)]
        levels, windows = [], []
        for i in range(len(out["depths"])):
            prefix = f"layers.{i}.blocks.0.modulation."
            level = 0
            while f"{prefix}focal_layers.{level}.0.weight" in sd:
                level += 1
            levels.append(level)
            if level:
                windows.append(_shape(sd[f"{prefix}focal_layers.0.0.weight"])[-1])
        out["focal_levels"] = levels
        if len(windows) == len(levels):
            out["focal_windows"] = windows
        out["use_layerscale"] = "layers.0.blocks.0.gamma_1" in sd
        out["use_postln_in_modulation"] = "layers.0.blocks.0.modulation.ln.weight" in sd
        fc1 = sd.get("layers.0.blocks.0.mlp.fc1.weight")
        if fc1 is not None:
            out["mlp_ratio"] = _shape(fc1)[0] / _shape(fc1)[1]

    merge = sd.get("layers.0.downsample.proj.weight")
    if merge is not None:
        # plain merging is a 2x2 conv, the conv embedding's merging a 3x3 one
        out["use_conv_embed"] = _shape(merge)[-1] == 3
    elif len(stem_shape) == 4:
        out["use_conv_embed"] = stem_shape[-2:] == (7, 7)
    if not out.get("use_conv_embed", False):
        ph, pw = stem_shape[-2:]
        out["patch_size"] = ph if ph == pw else [ph, pw]

    head = sd.get("head.weight")
    out["num_classes"] = _shape(head)[0] if head is not None else 0
    return out


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_CONFIG_FIELDS = frozenset(f.name for f in fields(VideoFocalNetConfig))


def build(**kwargs: Any) -> VideoFocalNet:
    """Build from official ``VideoFocalNet`` keyword arguments."""
    norm_layer = kwargs.pop("norm_layer", None)
    if norm_layer is not None and norm_layer is not nn.LayerNorm and norm_layer != "LayerNorm":
        raise VideployError(f"video_focalnet supports only norm_layer=nn.LayerNorm (the official default), got {norm_layer!r}")
    unknown = sorted(set(kwargs) - _CONFIG_FIELDS)
    if unknown:
        import difflib

        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, _CONFIG_FIELDS, n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise VideployError(
            f"video_focalnet has no option {', '.join(hints)}; its options are the official VideoFocalNet kwargs: {sorted(_CONFIG_FIELDS)}"
        )
    return VideoFocalNet(VideoFocalNetConfig(**kwargs))


FAMILY = register_family(
    Family(
        name="video_focalnet",
        build=build,
        convert=convert_official_state_dict,
        infer=infer_config,
        aliases={"num_frames": "num_frames", "image_size": "img_size"},
    ),
    description="Video-FocalNet, any configuration (official VideoFocalNet kwargs)",
)

# Kinetics-400 models of the official configs (configs/kinetics400/video-focalnet_*.yaml):
# the factories fix embed_dim / depths, the YAML sets the rest.
_K400 = dict(
    img_size=224,
    num_classes=400,
    focal_levels=[2, 2, 2, 2],
    focal_windows=[3, 3, 3, 3],
    use_conv_embed=False,
    use_layerscale=False,
    use_postln=False,
    use_postln_in_modulation=False,
    normalize_modulator=False,
    num_frames=8,
    tubelet_size=1,
)
ZOO: dict[str, dict[str, Any]] = {
    "video_focalnet_tiny": dict(_K400, embed_dim=96, depths=[2, 2, 6, 2], drop_path_rate=0.2),
    "video_focalnet_small": dict(_K400, embed_dim=96, depths=[2, 2, 18, 2], drop_path_rate=0.3),
    "video_focalnet_base": dict(_K400, embed_dim=128, depths=[2, 2, 18, 2], drop_path_rate=0.5),
}
_DESCRIPTIONS = {
    "video_focalnet_tiny": "Video-FocalNet-T, Kinetics-400 (8x224x224, 400 classes; 79.8 top-1 at 4x3 views)",
    "video_focalnet_small": "Video-FocalNet-S, Kinetics-400 (8x224x224, 400 classes; 81.4 top-1 at 4x3 views)",
    "video_focalnet_base": "Video-FocalNet-B, Kinetics-400 (8x224x224, 400 classes; 83.6 top-1 at 4x3 views)",
}
for _name, _defaults in ZOO.items():
    register(Entry(name=_name, family=FAMILY, defaults=_defaults, description=_DESCRIPTIONS[_name]))

# A tiny Video-FocalNet for videploy's own generated action videos (videploy.datasets.actions),
# trained with `videploy train video_focalnet_actions`: a comparison point for adafocusv3_actions.
register(
    Entry(
        name="video_focalnet_actions",
        family=FAMILY,
        defaults=dict(
            _K400,
            img_size=96,
            patch_size=8,
            num_classes=10,
            embed_dim=16,
            depths=[1, 1, 1],
            focal_levels=[2, 2, 2],
            focal_windows=[3, 3, 3],
            drop_path_rate=0.0,
        ),
        description="Video-FocalNet tiny (8x8 patches, embed 16, depths 1-1-1, 8x96x96), videploy's generated action videos (10 classes)",
    )
)
