"""Temporal shift (TSM), as used by the Uni-AdaFocus-TSM backbones.

Frames of a clip are stacked in the batch dimension: x is ((B*T), C, H, W) with row b*T + t.
With fold = C // fold_div:

* channels [0, fold) of frame t take frame t+1's values (zeros at the last frame),
* channels [fold, 2*fold) take frame t-1's values (zeros at the first frame),
* the remaining channels are unchanged.

It is pure data movement, so it is written with slices, zero blocks and one concatenation: no
in-place writes, no data-dependent control flow, and the batch stays symbolic under
``torch.export`` / ONNX export (the layout is read from the shape, never from the values).
"""

from __future__ import annotations

import torch
from torch import nn

from videploy.errors import VideployError


def temporal_shift(x: torch.Tensor, n_segment: int, fold_div: int = 8) -> torch.Tensor:
    """Shift 1/fold_div of the channels one frame back and 1/fold_div one frame forward (new tensor)."""
    if n_segment < 1 or fold_div < 1:
        raise VideployError(f"temporal_shift: n_segment and fold_div must be >= 1, got n_segment={n_segment}, fold_div={fold_div}")
    _, c, h, w = x.shape
    fold = c // fold_div
    clip = x.reshape(-1, n_segment, c, h, w)
    # One frame of zeros per shifted group, derived from x so dtype/device/batch follow it. The two
    # groups differ in width when fold_div == 1: then the first takes every channel and the second none.
    next_part, prev_part = clip[:, :, :fold], clip[:, :, fold : 2 * fold]
    from_next = torch.cat([next_part[:, 1:], torch.zeros_like(next_part[:, :1])], dim=1)  # frame t <- frame t+1
    from_prev = torch.cat([torch.zeros_like(prev_part[:, :1]), prev_part[:, :-1]], dim=1)  # frame t <- frame t-1
    out = torch.cat([from_next, from_prev, clip[:, :, 2 * fold :]], dim=2)
    return out.reshape(x.shape)


class TemporalShift(nn.Module):
    """Shift the input in time, then apply the wrapped layer (``net``; its keys become ``net.*``).

    Same constructor as the official module; ``inplace=True`` is rejected there too (it never worked).
    """

    def __init__(self, net: nn.Module, n_segment: int = 3, n_div: int = 8, inplace: bool = False) -> None:
        super().__init__()
        if inplace:
            raise VideployError("TemporalShift: inplace shifting is not supported (upstream does not implement it either); use inplace=False")
        self.net = net
        self.n_segment = n_segment
        self.fold_div = n_div
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.n_segment, fold_div=self.fold_div))

    @staticmethod
    def shift(x: torch.Tensor, n_segment: int, fold_div: int = 3, inplace: bool = False) -> torch.Tensor:
        """The official static call (note its default fold_div is 3, unlike the module's n_div=8)."""
        if inplace:
            raise VideployError("TemporalShift.shift: inplace=True is not supported; use inplace=False")
        return temporal_shift(x, n_segment, fold_div=fold_div)

    def extra_repr(self) -> str:
        return f"n_segment={self.n_segment}, fold_div={self.fold_div}"
