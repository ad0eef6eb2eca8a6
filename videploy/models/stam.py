"""STAM: a ViT-B/16 per frame, then a temporal transformer over the per-frame CLS tokens.

Paper: "An Image is Worth 16x16 Words, What is a Video Worth?" (Sharir, Noy, Zelnik-Manor, 2021).
The official model is ``VisionTransformer(..., aggregate=TAggregate(clip_length, embed_dim, n_layers))``;
:class:`STAMConfig` carries exactly its constructor keywords, and every state-dict key here is the
official one, so official checkpoints load strictly without renaming.

Two input layouts, told apart by ``x.dim()`` (static under export):

* official ``(B*T, 3, H, W)``, frames of one video contiguous (row ``b*T + t``);
* deploy ``(B, T, 3, H, W)``, what the exported graph takes (input ``video``, output ``logits``).

Both give ``(B, num_classes)`` logits, with T the aggregate's ``clip_length``.

The temporal transformer is the official ``nn.TransformerEncoder`` of
``nn.TransformerEncoderLayer(d_model=embed_dim, nhead=8)`` with torch's defaults (FFN 2048, ReLU,
post-norm, dropout 0.1, LayerNorm eps 1e-5) plus a final LayerNorm. It is rebuilt here from small
modules with torch's key names: its math is the same, it runs batch-first (fewer transposes in the
exported graph), and it never enters torch's fused encoder fast path, which exporters handle worse.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from videploy.bundle.manifest import Preprocessing
from videploy.errors import VideployError
from videploy.models.base import VideoModel
from videploy.models.blocks.vit import Block, PatchEmbed, trunc_normal_approx_
from videploy.models.checkpoint.unwrapping import strip_wrapper_prefixes
from videploy.models.registry import Entry, Family, register, register_family

# --- facts of the official temporal transformer and evaluation ---------------------------------
TEMPORAL_HEADS = 8  # nn.TransformerEncoderLayer(d_model, nhead=8), independent of the ViT's heads
TEMPORAL_FFN = 2048  # torch default dim_feedforward
TEMPORAL_DROPOUT = 0.1  # torch default dropout (inactive in eval)
VAL_ZOOM_FACTOR = 0.875  # infer.py: resize to int(input_size / 0.875), then centre-crop input_size
SQUISH_INPUT_SIZE = 448  # the official loader resizes 448 inputs straight to 448x448 (no crop)
CLIP_SECONDS = 10.0  # official frame_rate = frames_per_clip / 10 s (1.6 / 3.2 / 6.4 fps for 16 / 32 / 64)

_LAYER_NORM_NAMES = ("LayerNorm", "nn.LayerNorm", "torch.nn.LayerNorm", "torch.nn.modules.normalization.LayerNorm")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if not _is_int(value) or value < minimum:
        raise VideployError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class TAggregateConfig:
    """The official ``TAggregate(clip_length, embed_dim, n_layers)`` keywords (official defaults)."""

    clip_length: int | None = None  # frames per video; required (the official default None cannot build)
    embed_dim: int = 2048
    n_layers: int = 6

    def __post_init__(self) -> None:
        if self.clip_length is None:
            raise VideployError("STAM aggregate: clip_length (frames per video) is required, e.g. aggregate={'clip_length': 16, 'embed_dim': 768, 'n_layers': 6}")
        _positive_int("STAM aggregate", "clip_length", self.clip_length)
        _positive_int("STAM aggregate", "embed_dim", self.embed_dim)
        _positive_int("STAM aggregate", "n_layers", self.n_layers, minimum=0)
        if self.embed_dim % TEMPORAL_HEADS:
            raise VideployError(
                f"STAM aggregate: embed_dim={self.embed_dim} must be divisible by the temporal transformer's {TEMPORAL_HEADS} heads"
            )

    @classmethod
    def coerce(cls, value: Any) -> "TAggregateConfig":
        """Accept the config itself or a dict of TAggregate keywords."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise VideployError(f"STAM aggregate: unknown keyword(s) {unknown}; TAggregate takes {sorted(known)}")
            return cls(**value)
        raise VideployError(
            f"STAM: aggregate must be None, a dict of TAggregate keywords (clip_length, embed_dim, n_layers) "
            f"or a TAggregateConfig, got {type(value).__name__}"
        )


@dataclass(frozen=True)
class STAMConfig:
    """The official ``VisionTransformer.__init__`` keywords and defaults (stam/models/transformer_model.py).

    ``norm_layer`` is a class upstream; only the official ``nn.LayerNorm`` exists in the official code,
    so it is stored by name (``"LayerNorm"``) and other values are rejected. ``aggregate`` is
    ``None`` (a per-frame image classifier, as upstream), a dict of TAggregate keywords, or a
    :class:`TAggregateConfig` (dicts are converted on construction).
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    representation_size: int | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    norm_layer: str = "LayerNorm"
    aggregate: TAggregateConfig | None = None

    def __post_init__(self) -> None:
        owner = "STAM"
        if not _is_int(self.img_size):
            raise VideployError(f"{owner}: img_size must be one int (official STAM takes square frames only), got {self.img_size!r}")
        for name in ("img_size", "patch_size", "in_chans", "embed_dim", "num_heads"):
            _positive_int(owner, name, getattr(self, name))
        _positive_int(owner, "depth", self.depth, minimum=0)
        _positive_int(owner, "num_classes", self.num_classes, minimum=0)
        if self.patch_size > self.img_size:
            raise VideployError(f"{owner}: patch_size={self.patch_size} is larger than img_size={self.img_size}")
        if self.embed_dim % self.num_heads:
            raise VideployError(f"{owner}: embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}")
        if not isinstance(self.mlp_ratio, (int, float)) or isinstance(self.mlp_ratio, bool) or self.mlp_ratio <= 0:
            raise VideployError(f"{owner}: mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p < 1.0:
                raise VideployError(f"{owner}: {name} must be a probability in [0, 1), got {p!r}")
        # Upstream the head is Linear(embed_dim, ...) after pre_logits, so only a representation of
        # width embed_dim gives a model whose forward runs; reject the rest up front.
        if self.representation_size and self.representation_size != self.embed_dim:
            raise VideployError(
                f"{owner}: representation_size={self.representation_size} != embed_dim={self.embed_dim}; the official head and "
                "aggregate take embed_dim features, so use representation_size=None (the official STAM value) or embed_dim"
            )
        object.__setattr__(self, "norm_layer", _norm_layer_name(self.norm_layer))
        if self.aggregate is not None:
            agg = TAggregateConfig.coerce(self.aggregate)
            if agg.embed_dim != self.embed_dim:
                raise VideployError(
                    f"{owner}: aggregate embed_dim={agg.embed_dim} must equal the ViT embed_dim={self.embed_dim} "
                    f"(pass aggregate={{'clip_length': {agg.clip_length}, 'embed_dim': {self.embed_dim}, 'n_layers': {agg.n_layers}}})"
                )
            object.__setattr__(self, "aggregate", agg)

    @property
    def num_frames(self) -> int | None:
        return None if self.aggregate is None else self.aggregate.clip_length


def _norm_layer_name(value: Any) -> str:
    if value is None or value is nn.LayerNorm or (isinstance(value, str) and value in _LAYER_NORM_NAMES):
        return "LayerNorm"
    raise VideployError(
        f"STAM: norm_layer={value!r} is not supported; the official model uses torch.nn.LayerNorm (eps 1e-5), "
        "pass norm_layer='LayerNorm' or leave it out"
    )


# --- temporal aggregation (official TAggregate) -------------------------------------------------


class TemporalSelfAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_weight``, ``in_proj_bias``, ``out_proj``), batch-first.

    Uses ``F.scaled_dot_product_attention`` like torch's own module does when no attention weights are
    requested, so eval results match the official layer to float32 rounding.
    """

    def __init__(self, embed_dim: int, num_heads: int = TEMPORAL_HEADS, dropout: float = TEMPORAL_DROPOUT) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        heads = self.num_heads
        # (B, S, 3D) -> 3 x (B, heads, S, head_dim)
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).reshape(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class TemporalEncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer(d_model, nhead=8)`` with defaults: post-norm, ReLU FFN of width 2048."""

    def __init__(self, d_model: int, nhead: int = TEMPORAL_HEADS, dim_feedforward: int = TEMPORAL_FFN, dropout: float = TEMPORAL_DROPOUT) -> None:
        super().__init__()
        self.self_attn = TemporalSelfAttention(d_model, nhead, dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.self_attn(x)))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ffn))


class TemporalEncoder(nn.Module):
    """``nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model))``: key names ``layers.{i}``, ``norm``."""

    def __init__(self, d_model: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TemporalEncoderLayer(d_model) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class TAggregate(nn.Module):
    """Per-frame features -> one video embedding: prepend a temporal CLS token, add a learned
    temporal position embedding, run the temporal transformer and keep the CLS position.

    Takes ``(B, T, D)``, or the official ``(B*T, D)`` with frames of one video contiguous.
    """

    def __init__(self, clip_length: int, embed_dim: int = 2048, n_layers: int = 6) -> None:
        super().__init__()
        self.clip_length = clip_length
        self.transformer_enc = TemporalEncoder(embed_dim, n_layers)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, clip_length + 1, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.reshape(-1, self.clip_length, x.shape[-1])
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        return self.transformer_enc(x)[:, 0]


# --- the model ----------------------------------------------------------------------------------


class STAM(VideoModel):
    """STAM video classifier; ``model(frames)`` as upstream, or ``model(video)`` in the deploy layout."""

    family = "stam"
    input_names = ("video",)
    output_names = ("logits",)

    def __init__(self, config: STAMConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else STAMConfig()
        self.config = cfg
        self.embed_dim = self.num_features = cfg.embed_dim
        # Registration order = the official state-dict order: own parameters, then aggregate, patch_embed, blocks, norm, head.
        agg = cfg.aggregate
        self.aggregate = None if agg is None else TAggregate(agg.clip_length, agg.embed_dim, agg.n_layers)
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, cfg.embed_dim))
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        # stochastic depth grows linearly with depth (float32 steps, as upstream computes them)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist() if cfg.depth else []
        self.blocks = nn.ModuleList(
            Block(
                cfg.embed_dim,
                cfg.num_heads,
                mlp_ratio=cfg.mlp_ratio,
                qkv_bias=cfg.qkv_bias,
                qk_scale=cfg.qk_scale,
                drop=cfg.drop_rate,
                attn_drop=cfg.attn_drop_rate,
                drop_path=rate,
                norm_layer=nn.LayerNorm,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(cfg.embed_dim)
        if cfg.representation_size:
            self.pre_logits: nn.Module = nn.Sequential()
            self.pre_logits.add_module("fc", nn.Linear(cfg.embed_dim, cfg.representation_size))
            self.pre_logits.add_module("act", nn.Tanh())
        else:
            self.pre_logits = nn.Identity()
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._init_weights()

    # --- initialisation (fresh models only; checkpoints overwrite all of it) ---
    def _init_weights(self) -> None:
        # Official scheme: truncated-normal(0.02) for tokens, embeddings and every Linear weight, zero
        # biases, unit LayerNorms; the temporal in-projection keeps torch MHA's Xavier-uniform init.
        for p in (self.cls_token, self.pos_embed):
            trunc_normal_approx_(p, std=0.02)
        if self.aggregate is not None:
            trunc_normal_approx_(self.aggregate.cls_token, std=0.02)
            trunc_normal_approx_(self.aggregate.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_approx_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, TemporalSelfAttention):
                nn.init.xavier_uniform_(m.in_proj_weight)
                nn.init.zeros_(m.in_proj_bias)

    # --- forward ---
    @property
    def num_frames(self) -> int | None:
        return self.config.num_frames

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames -> (N, D) per-frame CLS features (after the final LayerNorm and pre_logits)."""
        x = self.patch_embed(frames)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat((cls, x), dim=1) + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        # LayerNorm is per token, so normalising only the CLS token equals normalising all and slicing
        return self.pre_logits(self.norm(x[:, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B*T, C, H, W)`` (official) or ``(B, T, C, H, W)`` (deploy) -> ``(B, num_classes)`` logits.

        Without an aggregate (``aggregate=None``, the upstream image-classifier mode) a 4-D input gives
        per-frame logits ``(N, num_classes)``.
        """
        if x.dim() == 5:
            frames_per_video = self.num_frames
            if frames_per_video is None:
                raise VideployError("STAM built with aggregate=None classifies single frames; pass (N, C, H, W) frames or build it with an aggregate")
            if x.shape[1] != frames_per_video:
                raise VideployError(f"STAM expects {frames_per_video} frames per video (aggregate clip_length), got input of shape {tuple(x.shape)}")
            batch = x.shape[0]
            features = self.forward_features(x.flatten(0, 1)).reshape(batch, frames_per_video, -1)
        elif x.dim() == 4:
            features = self.forward_features(x)
            n, t = x.shape[0], self.num_frames
            # concrete sizes only: under export the 4-D batch is symbolic and reshape checks it
            if t is not None and isinstance(n, int) and n % t:
                raise VideployError(f"STAM got {n} frames, not a multiple of clip_length={t}; the official layout is (B*{t}, C, H, W)")
        else:
            raise VideployError(f"STAM takes (B*T, C, H, W) or (B, T, C, H, W) input, got shape {tuple(x.shape)}")
        if self.aggregate is not None:
            features = self.aggregate(features)
        return self.head(features)

    # --- deployment contract ---
    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        """One ``video`` of shape (batch, T, C, H, W), values in [0, 1) like the official ToTensor() frames."""
        t = self.num_frames
        if t is None:
            raise VideployError("STAM built with aggregate=None has no video input; build it with an aggregate (e.g. a zoo name like stam_16)")
        size = self.config.img_size
        return (torch.rand(batch_size, t, self.config.in_chans, size, size),)

    @property
    def official_frame_rate(self) -> float | None:
        """Frames per second the official evaluation resamples to (clip_length / 10 s): 1.6, 3.2, 6.4 for 16, 32, 64."""
        t = self.num_frames
        return None if t is None else t / CLIP_SECONDS

    def preprocessing(self) -> Preprocessing:
        """The official Kinetics evaluation (stam/utils/utils.py, infer.py), one view per video.

        Pixels: RGB ``ToTensor()`` only, i.e. scale 1/255 and no mean/std normalisation. Spatial:
        resize the short side to ``int(img_size / 0.875)`` (256 for 224) and centre-crop
        ``img_size``; for ``img_size == 448`` the official loader resizes straight to 448x448
        (``resize_short = 0``).

        Frames (``sampling = "uniform"``): upstream, torchvision's ``Kinetics400``/``VideoClips`` resamples each
        video to ``frame_rate = T / 10`` fps (frame ``floor(i * fps / frame_rate)``, i = 0..T-1) and takes the
        first clip of T resampled frames (``step_between_clips = 1000``), i.e. T frames evenly spaced
        over the first 10 seconds. For a 10-second Kinetics clip that is T evenly spaced frames over the
        whole video, which is what ``uniform`` expresses. What ``Preprocessing`` cannot express: the
        fixed 10 s window (a longer video is only read for its first 10 s upstream), the frame-rate
        resampling itself, and that upstream silently skips videos shorter than 10 s (they yield no
        clip). ``official_frame_rate`` gives the rate for reference.
        """
        t = self.num_frames
        if t is None:
            raise VideployError("STAM built with aggregate=None has no video preprocessing; build it with an aggregate (e.g. stam_16)")
        size = self.config.img_size
        resize_short = 0 if size == SQUISH_INPUT_SIZE else int(size / VAL_ZOOM_FACTOR)
        return Preprocessing(
            num_frames=t,
            sampling="uniform",
            crop_size=(size, size),
            resize_short=resize_short,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            scale=1.0 / 255.0,
            channel_order="RGB",
            num_clips=1,
            num_crops=1,
        )


# --- building, checkpoints, registry ------------------------------------------------------------


def build(**kwargs: Any) -> STAM:
    """``STAM`` from the official ``VisionTransformer`` keywords (``aggregate`` as a dict of TAggregate keywords)."""
    return STAM(STAMConfig(**kwargs))


# Keys some official checkpoint holds that the model does not have, dropped by name. None are known:
# the published configuration's state dict (reference manifests) matches this model key for key.
# (The official checkpoints could not be downloaded here to confirm; infer.py loads with strict=False.)
_DROPPED_KEYS: tuple[str, ...] = ()


def convert_official_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Official STAM state dict (container already unwrapped, e.g. ``ckpt["model"]``) -> ours: a new dict.

    Key names are already identical; wrapper prefixes on every key (``module.`` from
    ``nn.DataParallel``/DDP, ``_orig_mod.`` from ``torch.compile``) are stripped, and the keys in
    ``_DROPPED_KEYS`` are left out.
    """
    sd, _ = strip_wrapper_prefixes(state_dict)
    return {k: v for k, v in sd.items() if k not in _DROPPED_KEYS}


def _count_indexed(keys: Any, pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.fullmatch(k))}
    return max(found) + 1 if found else 0


def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Official kwargs pinned down by a state dict (num_heads is not: it leaves no trace in the weights)."""
    sd = convert_official_state_dict(state_dict)
    out: dict[str, Any] = {}
    proj = sd.get("patch_embed.proj.weight")
    if proj is not None:
        embed_dim, in_chans, patch, _ = (int(s) for s in proj.shape)
        out.update(embed_dim=embed_dim, in_chans=in_chans, patch_size=patch)
        pos = sd.get("pos_embed")
        if pos is not None:
            side = math.isqrt(int(pos.shape[1]) - 1)
            if side * side == int(pos.shape[1]) - 1:
                out["img_size"] = side * patch
    head = sd.get("head.weight")
    out["num_classes"] = int(head.shape[0]) if head is not None else 0
    out["depth"] = _count_indexed(sd, r"blocks\.(\d+)\.norm1\.weight")
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        out["mlp_ratio"] = int(fc1.shape[0]) / int(fc1.shape[1])
        out["qkv_bias"] = "blocks.0.attn.qkv.bias" in sd
    rep = sd.get("pre_logits.fc.weight")
    out["representation_size"] = int(rep.shape[0]) if rep is not None else None
    agg_pos = sd.get("aggregate.pos_embed")
    if agg_pos is not None:
        out["aggregate"] = {
            "clip_length": int(agg_pos.shape[1]) - 1,
            "embed_dim": int(agg_pos.shape[2]),
            "n_layers": _count_indexed(sd, r"aggregate\.transformer_enc\.layers\.(\d+)\.norm1\.weight"),
        }
    else:
        out["aggregate"] = None
    return out


def _set_num_frames(kwargs: dict[str, Any], value: Any) -> dict[str, Any]:
    """``num_frames`` override: the aggregate's clip_length (a new aggregate as in the official factory if there is none)."""
    agg = kwargs.get("aggregate")
    if agg is None:
        agg = {"clip_length": value, "embed_dim": kwargs.get("embed_dim", STAMConfig.embed_dim), "n_layers": 6}
    elif isinstance(agg, TAggregateConfig):
        agg = replace(agg, clip_length=value)
    elif isinstance(agg, Mapping):
        agg = {**agg, "clip_length": value}
    else:
        raise VideployError(f"STAM: cannot set num_frames on aggregate={agg!r}; pass aggregate as a dict of TAggregate keywords")
    return {**kwargs, "aggregate": agg}


FAMILY = register_family(
    Family(
        name="stam",
        build=build,
        convert=convert_official_state_dict,
        infer=infer_config,
        aliases={"num_frames": _set_num_frames, "image_size": "img_size"},
        parts={
            "patch_embed.": "patch embedding",
            "cls_token": "spatial tokens",
            "pos_embed": "spatial tokens",
            "blocks.": "spatial ViT blocks",
            "norm.": "spatial final norm",
            "pre_logits.": "representation layer",
            "aggregate.": "temporal transformer",
            "head.": "classifier head",
        },
    ),
    description="STAM (official VisionTransformer + TAggregate keywords)",
)


def _zoo_defaults(frames: int) -> dict[str, Any]:
    # the official factory STAM_224 (stam/models/transformer_model.py) with create_model's Kinetics-400 defaults
    return {
        "img_size": 224,
        "patch_size": 16,
        "embed_dim": 768,
        "depth": 12,
        "num_heads": 12,
        "representation_size": None,
        "num_classes": 400,
        "aggregate": {"clip_length": frames, "embed_dim": 768, "n_layers": 6},
    }


_ZOO = {
    8: "STAM-8, Kinetics-400, 8 frames at 224 (77.5% top-1, 135 GFLOPs in the README). The README publishes stam_8.pth "
    "but the official factory has no stam_8: this is the factory's STAM_224 with 8 frames.",
    16: "STAM-16, Kinetics-400, 16 frames at 224 (79.3% top-1, 270 GFLOPs in the README); official factory stam_16.",
    32: "STAM-32, Kinetics-400, 32 frames at 224 (79.95% top-1, 540 GFLOPs in the README); official factory stam_32.",
    64: "STAM-64, Kinetics-400, 64 frames at 224 (80.5% top-1, 1080 GFLOPs in the README); official factory stam_64.",
}
for _frames, _description in _ZOO.items():
    register(Entry(name=f"stam_{_frames}", family=FAMILY, defaults=_zoo_defaults(_frames), description=_description))

# A tiny STAM for videploy's own generated action videos (videploy.datasets.actions), trained with
# `videploy train stam_actions`: a comparison point for adafocusv3_actions.
register(
    Entry(
        name="stam_actions",
        family=FAMILY,
        defaults={
            "img_size": 96,
            "patch_size": 16,
            "embed_dim": 64,
            "depth": 2,
            "num_heads": 4,
            "representation_size": None,
            "num_classes": 10,
            "aggregate": {"clip_length": 8, "embed_dim": 64, "n_layers": 1},
        },
        description="STAM tiny (ViT embed 64, depth 2, 16x16 patches; 1 temporal layer; 8x96x96), videploy's generated action videos (10 classes)",
    )
)
