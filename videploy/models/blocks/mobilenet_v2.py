"""MobileNetV2, the AdaFocusV3 glance network, with the official Uni-AdaFocus key names.

Layout (what an official checkpoint's keys pin down):

* ``features.0``: stem, Conv3x3 stride 2 (3 -> 32) + BN + ReLU6, keys ``features.0.{0,1}``;
* ``features.1`` .. ``features.17``: inverted residual blocks; each block's layers live in one
  ``conv`` sequence (``features.i.conv.{0,1,3,4[,6,7]}``): with expansion 1 it is
  depthwise + BN + ReLU6 + pointwise-linear + BN, otherwise pointwise-expand + BN + ReLU6 first;
* ``features.18``: the 1x1 conv to ``last_channel`` (1280) + BN + ReLU6;
* ``classifier``: a plain Linear on the spatially averaged features (no dropout).

The glance feature map is ``features(x)`` — (N, 1280, H/32, W/32) — which AdaFocusV3's policy and
classifier consume; the classifier is only used by ``forward``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from videploy.errors import VideployError
from videploy.models.registry import Family, register_family

# (expansion t, output channels c, repeats n, first stride s) of the seven bottleneck stages.
_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM_CHANNELS = 32  # fixed for every width multiplier (the official code never scales it)
_LAST_CHANNEL = 1280


@dataclass(frozen=True)
class MobileNetV2Config:
    """Official ``MobileNetV2`` constructor keywords."""

    n_class: int = 1000
    input_size: int = 224
    width_mult: float = 1.0


def make_divisible(x: float, divisible_by: int = 8) -> int:
    """Round ``x`` *up* to a multiple of ``divisible_by`` (the official rounding; torchvision rounds to nearest)."""
    return int(math.ceil(x / divisible_by) * divisible_by)


def conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    """3x3 conv + BN + ReLU6 (the stem)."""
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU6())


def conv_1x1_bn(inp: int, oup: int) -> nn.Sequential:
    """1x1 conv + BN + ReLU6 (the head before pooling)."""
    return nn.Sequential(nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU6())


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear); identity shortcut when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise VideployError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        self.stride = stride
        hidden_dim = int(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            # With expansion 1 the official block has no expanding conv, so indices shift by 3.
            layers += [nn.Conv2d(inp, hidden_dim, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden_dim), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden_dim, hidden_dim, 3, stride, 1, groups=hidden_dim, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU6(),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with the official Uni-AdaFocus call surface.

    ``get_featmap(x) -> (featmap, pooled)``: features (N, last_channel, H/32, W/32) and their spatial mean.
    ``forward(x) -> (logits, featmap)``: the classifier on the pooled features, and the feature map.
    """

    def __init__(self, n_class: int = 1000, input_size: int = 224, width_mult: float = 1.0) -> None:
        super().__init__()
        if input_size % 32 != 0:
            raise VideployError(f"MobileNetV2: input_size must be a multiple of 32 (the network's stride), got {input_size}")
        self.config = MobileNetV2Config(n_class=n_class, input_size=input_size, width_mult=width_mult)
        # Official quirk kept for key/shape compatibility: the head widens only for width_mult > 1.
        self.last_channel = make_divisible(_LAST_CHANNEL * width_mult) if width_mult > 1.0 else _LAST_CHANNEL

        features: list[nn.Module] = [conv_bn(3, _STEM_CHANNELS, 2)]
        in_ch = _STEM_CHANNELS
        for t, c, n, s in _STAGES:
            # Official quirk: the expansion-1 stage keeps its width unscaled.
            out_ch = make_divisible(c * width_mult) if t > 1 else c
            for i in range(n):
                features.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, expand_ratio=t))
                in_ch = out_ch
        features.append(conv_1x1_bn(in_ch, self.last_channel))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Linear(self.last_channel, n_class)
        self._init_weights()

    def _init_weights(self) -> None:
        # Same distributions as the official initialisation, so training from scratch behaves alike.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        featmap = self.features(x)
        # Two successive means, as upstream; a single mean over (2, 3) differs in the last float bits.
        logits = self.classifier(featmap.mean(3).mean(2))
        return logits, featmap

    def get_featmap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        featmap = self.features(x)
        return featmap, featmap.mean([2, 3])


def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """The official width-1.0 network (randomly initialised: load weights with ``load_checkpoint``)."""
    kwargs.setdefault("width_mult", 1.0)
    return MobileNetV2(**kwargs)


def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Official kwargs a MobileNetV2 state dict pins down (for mismatch messages)."""
    out: dict[str, Any] = {}
    if "classifier.weight" in state_dict:
        out["n_class"] = int(state_dict["classifier.weight"].shape[0])
    return out


FAMILY = register_family(
    Family(
        name="mobilenet_v2",
        build=MobileNetV2,
        infer=infer_config,
        aliases={"num_classes": "n_class", "image_size": "input_size"},
        component=True,
    ),
    description="MobileNetV2 (AdaFocusV3 glance network), official Uni-AdaFocus layout",
)
