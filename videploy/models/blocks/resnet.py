"""ResNet, the AdaFocusV3 local (focus-patch) network, with the official Uni-AdaFocus key names.

The layout is the torchvision v1.5 ResNet that Uni-AdaFocus vendors (stride on the 3x3 conv of a
Bottleneck; a ``downsample`` = 1x1 conv with stride + BN on the first block of a stage whose shape
changes). Keys: ``conv1, bn1, layer{1..4}.{j}.{conv1,bn1,conv2,bn2[,conv3,bn3][,downsample.0,
downsample.1]}, fc``. Uni-AdaFocus adds two feature methods on top of ``forward``:
``get_featvec(x)`` (pooled layer4, the vector the local classifier consumes) and ``get_featmap(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from videploy.errors import VideployError
from videploy.models.registry import Family, register_family

NormLayer = Callable[[int], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv, 'same' padding for the given dilation, no bias (a BN follows)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=dilation, groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise VideployError("BasicBlock supports only groups=1 and width_per_group=64; use block='Bottleneck' for ResNeXt/wide variants")
        if dilation > 1:
            raise VideployError("BasicBlock does not support dilation; use block='Bottleneck' with replace_stride_with_dilation")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand by 4 (ResNet-50/101/152)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


BLOCKS: dict[str, type[nn.Module]] = {"basicblock": BasicBlock, "bottleneck": Bottleneck}


def resolve_block(block: str | type[nn.Module]) -> type[nn.Module]:
    """The block class from a class or its name (case-insensitive; a dotted path's last part counts)."""
    if isinstance(block, type):
        if block not in BLOCKS.values():
            raise VideployError(f"ResNet: unsupported block class {block.__name__}; use 'Bottleneck' or 'BasicBlock'")
        return block
    key = str(block).rsplit(".", 1)[-1].lower()
    if key not in BLOCKS:
        raise VideployError(f"ResNet: unknown block {block!r}; use 'Bottleneck' (ResNet-50/101/152) or 'BasicBlock' (ResNet-18/34)")
    return BLOCKS[key]


@dataclass(frozen=True)
class ResNetConfig:
    """Official ``ResNet`` constructor keywords (``block`` by class name; ``norm_layer`` is not config)."""

    block: str = "Bottleneck"
    layers: tuple[int, ...] = (3, 4, 6, 3)
    num_classes: int = 1000
    zero_init_residual: bool = False
    groups: int = 1
    width_per_group: int = 64
    replace_stride_with_dilation: tuple[bool, bool, bool] | None = None
    width: int = 64


class ResNet(nn.Module):
    """ResNet with the official Uni-AdaFocus call surface.

    ``forward(x) -> logits``; ``get_featvec(x) -> (N, 512*expansion)`` pooled layer4;
    ``get_featmap(x) -> (layer4 map, pooled vector)``.
    """

    def __init__(
        self,
        block: str | type[nn.Module],
        layers: Sequence[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        norm_layer: NormLayer | None = None,
        width: int = 64,
    ) -> None:
        super().__init__()
        block_cls = resolve_block(block)
        if len(layers) != 4:
            raise VideployError(f"ResNet: layers must give the number of blocks of the 4 stages, got {list(layers)}")
        dilate = [False, False, False] if replace_stride_with_dilation is None else list(replace_stride_with_dilation)
        if len(dilate) != 3:
            raise VideployError(f"ResNet: replace_stride_with_dilation must be None or 3 booleans, got {replace_stride_with_dilation}")
        self.config = ResNetConfig(
            block=block_cls.__name__,
            layers=tuple(int(n) for n in layers),
            num_classes=num_classes,
            zero_init_residual=zero_init_residual,
            groups=groups,
            width_per_group=width_per_group,
            replace_stride_with_dilation=None if replace_stride_with_dilation is None else tuple(bool(d) for d in dilate),
            width=int(width),
        )
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise VideployError(f"ResNet: width (stem channels; the stages have width x 1, 2, 4, 8 planes) must be a positive integer, got {width!r}")
        self._norm_layer: NormLayer = norm_layer or nn.BatchNorm2d
        # ``width`` is not an official keyword: 64 is the official network; smaller values give the
        # narrow encoders videploy trains itself (every stage scaled alike).
        self.inplanes = width
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group

        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block_cls, width, layers[0])
        self.layer2 = self._make_layer(block_cls, 2 * width, layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(block_cls, 4 * width, layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(block_cls, 8 * width, layers[3], stride=2, dilate=dilate[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * block_cls.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            # Keep the resolution: the stage's stride becomes dilation of the following 3x3 convs.
            self.dilation *= stride
            stride = 1
        out_ch = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_ch:
            downsample = nn.Sequential(conv1x1(self.inplanes, out_ch, stride), self._norm_layer(out_ch))
        stage = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation, self._norm_layer)]
        self.inplanes = out_ch
        for _ in range(1, blocks):
            stage.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width, dilation=self.dilation, norm_layer=self._norm_layer))
        return nn.Sequential(*stage)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Each residual branch then starts as zero, so every block begins as the identity.
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _layer4(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def _pool(self, featmap: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(featmap), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self._pool(self._layer4(x)))

    def get_featvec(self, x: torch.Tensor) -> torch.Tensor:
        return self._pool(self._layer4(x))

    def get_featmap(self, x: torch.Tensor, pooled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(layer4 map, pooled vector). ``pooled`` exists only for call compatibility: upstream ignores it too."""
        featmap = self._layer4(x)
        return featmap, self._pool(featmap)

    @property
    def feature_dim(self) -> int:
        return int(self.fc.weight.shape[-1])


# name -> (block, layers, fixed kwargs): the official factories.
ARCHS: dict[str, tuple[str, tuple[int, int, int, int], dict[str, int]]] = {
    "resnet18": ("BasicBlock", (2, 2, 2, 2), {}),
    "resnet34": ("BasicBlock", (3, 4, 6, 3), {}),
    "resnet50": ("Bottleneck", (3, 4, 6, 3), {}),
    "resnet101": ("Bottleneck", (3, 4, 23, 3), {}),
    "resnet152": ("Bottleneck", (3, 8, 36, 3), {}),
    "resnext50_32x4d": ("Bottleneck", (3, 4, 6, 3), {"groups": 32, "width_per_group": 4}),
    "resnext101_32x8d": ("Bottleneck", (3, 4, 23, 3), {"groups": 32, "width_per_group": 8}),
    "wide_resnet50_2": ("Bottleneck", (3, 4, 6, 3), {"width_per_group": 128}),
    "wide_resnet101_2": ("Bottleneck", (3, 4, 23, 3), {"width_per_group": 128}),
}


def resnet(arch: str, **kwargs: Any) -> ResNet:
    """One of the official factories by name (randomly initialised: load weights with ``load_checkpoint``)."""
    if arch not in ARCHS:
        raise VideployError(f"unknown ResNet architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    block, layers, fixed = ARCHS[arch]
    return ResNet(block, layers, **{**kwargs, **fixed})


def resnet18(**kwargs: Any) -> ResNet:
    return resnet("resnet18", **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    return resnet("resnet34", **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50, the AdaFocusV3 local network."""
    return resnet("resnet50", **kwargs)


def resnet101(**kwargs: Any) -> ResNet:
    return resnet("resnet101", **kwargs)


def resnet152(**kwargs: Any) -> ResNet:
    return resnet("resnet152", **kwargs)


def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Official kwargs a ResNet state dict pins down: block, blocks per stage, num_classes."""
    out: dict[str, Any] = {}
    if "fc.weight" in state_dict:
        out["num_classes"] = int(state_dict["fc.weight"].shape[0])
    out["block"] = "Bottleneck" if "layer1.0.conv3.weight" in state_dict else "BasicBlock"
    counts = []
    for stage in range(1, 5):
        indices = {int(k.split(".")[1]) for k in state_dict if k.startswith(f"layer{stage}.")}
        counts.append(max(indices) + 1 if indices else 0)
    out["layers"] = counts
    return out


FAMILY = register_family(
    Family(name="resnet", build=ResNet, infer=infer_config, component=True),
    description="ResNet (AdaFocusV3 local network), official Uni-AdaFocus/torchvision layout",
)
