"""Vision Transformer parts (patch embedding, multi-head self-attention, MLP, pre-norm block).

Written for this package (timm and torchvision are not dependencies). Attribute names follow the
timm-style ViT that STAM's official code uses, so official state dicts load without renaming:
``patch_embed.proj``, ``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``,
``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1``, ``blocks.{i}.mlp.fc2``.

Everything here is export-friendly: shapes come from ``x.shape`` (symbolic under ``torch.export``),
there is no Python control flow on tensor values, and eval mode is deterministic.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from videploy.errors import VideployError


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: during training, zero the whole residual branch for a random subset of samples.

    Surviving samples are scaled by ``1 / keep_prob`` so the expected value is unchanged; in eval
    (or with ``drop_prob == 0``) this is the identity, which is what export sees.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    # one Bernoulli draw per sample, broadcast over every other dimension
    mask_shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    keep = torch.empty(mask_shape, dtype=x.dtype, device=x.device).bernoulli_(keep_prob)
    return x * keep / keep_prob


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (no parameters, so it adds no state-dict keys)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class PatchEmbed(nn.Module):
    """Square image -> (N, num_patches, embed_dim) tokens with one strided convolution.

    The input must be exactly ``img_size`` x ``img_size`` (the positional embedding is sized for it);
    a patch size that does not divide the image drops the remainder, as a strided conv does.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        # H and W are static under export (only the batch is dynamic), so this check is traced away.
        if (height, width) != self.img_size:
            raise VideployError(
                f"PatchEmbed got {height}x{width} frames but the model was built for img_size={self.img_size[0]}; "
                f"resize/crop frames to {self.img_size[0]}x{self.img_size[1]} or build the model with img_size={height}"
            )
        # (N, D, h, w) -> (N, h*w, D), tokens row-major over the patch grid
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and an output ``proj``.

    The product ``softmax((q @ k^T) * scale) @ v`` goes through ``scaled_dot_product_attention``:
    the exporter lowers it to plain MatMul/Softmax (TensorRT fuses that pattern itself), and the
    FLOP counter can tell attention products from layers with weights (``count_gflops``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise VideployError(f"Attention: embed dim {dim} is not divisible by num_heads={num_heads}; choose num_heads dividing {dim}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        # `or` on purpose: qk_scale=None (and 0) mean "use 1/sqrt(head_dim)"
        self.scale = qk_scale or head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        heads = self.num_heads
        # (B, N, 3D) -> (3, B, heads, N, head_dim)
        qkv = self.qkv(x).reshape(batch, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        drop = self.attn_drop.p if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """Two-layer feed-forward network: ``fc1`` -> activation -> dropout -> ``fc2`` -> dropout."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop)
        # DropPath(0) is the identity too, but Identity keeps eval graphs and module prints minimal
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def trunc_normal_approx_(tensor: torch.Tensor, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
    """In-place init: a standard normal folded into (-2, 2) by ``fmod``, then scaled to ``std``.

    This is the cheap truncated-normal approximation STAM initialises with (values beyond two
    standard deviations wrap around instead of being redrawn); used only for fresh models.
    """
    with torch.no_grad():
        return tensor.normal_().fmod_(2.0).mul_(std).add_(mean)
