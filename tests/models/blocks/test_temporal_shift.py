"""Temporal shift: the official reference vector, an independent loop implementation, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim, export

from tests.conftest import reference_vector
from videploy.errors import VideployError
from videploy.models.blocks.temporal_shift import TemporalShift, temporal_shift


def loop_shift(x: torch.Tensor, n_segment: int, fold_div: int) -> torch.Tensor:
    """Written from the definition, frame by frame and channel by channel."""
    nt, c, _, _ = x.shape
    fold = c // fold_div
    out = torch.zeros_like(x)
    for row in range(nt):
        t = row % n_segment
        for ch in range(c):
            if ch < fold:
                if t + 1 < n_segment:
                    out[row, ch] = x[row + 1, ch]
            elif ch < 2 * fold:
                if t >= 1:
                    out[row, ch] = x[row - 1, ch]
            else:
                out[row, ch] = x[row, ch]
    return out


def test_reference_vector(ref_dir):
    meta, arrays = reference_vector(ref_dir, "uniadafocus_tsm_shift_public")
    x = torch.from_numpy(arrays["in"]["x"])
    n_segment = meta["shift_config"]["n_segment"]
    for d in meta["shift_config"]["fold_divs"]:
        got = temporal_shift(x, n_segment=n_segment, fold_div=d)
        np.testing.assert_array_equal(got.numpy(), arrays["out"][f"shift_div{d}"])  # pure data movement: exact


@pytest.mark.parametrize(
    "batch, n_segment, channels, fold_div",
    [
        (2, 4, 16, 8),
        (3, 3, 10, 3),
        (1, 8, 24, 4),
        (2, 1, 8, 8),
        (2, 4, 5, 8),
        (1, 2, 4, 2),
        # fold_div 1: fold = C, so every channel comes from the next frame and none from the previous
        (2, 4, 6, 1),
        (2, 3, 5, 2),  # odd C: one channel left unshifted
    ],
)
def test_matches_loop_definition(batch, n_segment, channels, fold_div):
    torch.manual_seed(batch * 100 + channels)
    x = torch.randn(batch * n_segment, channels, 3, 2)
    before = x.clone()
    got = temporal_shift(x, n_segment, fold_div)
    assert torch.equal(got, loop_shift(x, n_segment, fold_div))
    assert torch.equal(x, before)  # not in place
    assert got.data_ptr() != x.data_ptr()


def test_module_wraps_layer_after_shift():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 4, 1)
    module = TemporalShift(conv, n_segment=4, n_div=8)
    assert set(module.state_dict()) == {"net.weight", "net.bias"}  # official keys: <layer>.net.*
    x = torch.randn(8, 16, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(module(x), conv(loop_shift(x, 4, 8)), rtol=0, atol=0)


def test_static_shift_keeps_official_default_and_rejects_inplace():
    x = torch.randn(6, 9, 2, 2)
    assert torch.equal(TemporalShift.shift(x, 3), loop_shift(x, 3, 3))  # upstream default fold_div=3
    with pytest.raises(VideployError, match="inplace"):
        TemporalShift(nn.Identity(), inplace=True)
    with pytest.raises(VideployError, match="inplace"):
        TemporalShift.shift(x, 3, inplace=True)


def test_exports_with_dynamic_batch():
    module = TemporalShift(nn.Identity(), n_segment=4, n_div=8).eval()
    clips = Dim("clips", min=1, max=64)
    program = export(module, (torch.randn(8, 16, 5, 5),), dynamic_shapes={"x": {0: 4 * clips}})
    # slicing, zeros and concatenation only: nothing that writes in place
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any(t.endswith("_") or "copy_" in t or "index_put" in t for t in targets), targets
    x = torch.randn(12, 16, 5, 5)
    assert torch.equal(program.module()(x), loop_shift(x, 4, 8))
