"""count_gflops: hand-counted MACs, attention, and the official Uni-AdaFocus cost constants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videploy.errors import VideployError
from videploy.models.blocks.mobilenet_v2 import mobilenet_v2
from videploy.models.blocks.resnet import resnet50
from videploy.models.flops import count_gflops, gflops_by_module

# Official constants (Uni-AdaFocus ops/early_exit_uni_adafocus.py), GFLOPs per frame / patch, "without fc".
OFFICIAL_MBV2_224 = 0.299511328
OFFICIAL_R50 = {96: 0.750725056, 128: 1.334601664, 160: 2.08530016, 192: 3.002820544}


class ConvLinear(nn.Module):
    """Conv(3->8, 3x3, stride 2, pad 1) -> BN -> ReLU -> mean -> Linear(8->5), returning a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean((2, 3))), h


def _bn_channels(model: nn.Module) -> int:
    return sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_conv_linear_equals_hand_count():
    x = torch.randn(2, 3, 10, 12)
    # conv: output 2 x 8 x 5 x 6 positions, each 3*3*3 MACs; linear: 2 x 5 outputs of 8 MACs.
    # BN, ReLU, mean and the bias adds are not counted.
    expected = 2 * 8 * 5 * 6 * (3 * 3 * 3) + 2 * 5 * 8
    assert count_gflops(ConvLinear().eval(), x) * 1e9 == pytest.approx(expected, abs=1e-6)


def test_grouped_and_depthwise_convs():
    x = torch.randn(1, 8, 6, 6)
    grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4)  # each output sees 8/4 input channels
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_gflops(grouped, x) * 1e9 == pytest.approx(16 * 36 * 2 * 9, abs=1e-6)
    assert count_gflops(depthwise, x) * 1e9 == pytest.approx(8 * 36 * 9, abs=1e-6)


def test_inputs_as_tuple_or_dict_and_meta_device():
    class MatMul(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.matmul(a, b)

    # batched matmul through positional inputs: 3 x (4 x 6 @ 6 x 5)
    assert count_gflops(MatMul(), (torch.randn(3, 4, 6), torch.randn(3, 6, 5))) * 1e9 == pytest.approx(3 * 4 * 6 * 5)
    lin = nn.Linear(6, 3)
    assert count_gflops(lin, {"input": torch.randn(7, 6)}) * 1e9 == pytest.approx(7 * 6 * 3)
    with torch.device("meta"):
        meta_model = ConvLinear().eval()
        meta_x = torch.empty(2, 3, 10, 12)
    assert count_gflops(meta_model, meta_x) == count_gflops(ConvLinear().eval(), torch.randn(2, 3, 10, 12))
    with pytest.raises(VideployError, match="inputs"):
        count_gflops(lin, 3)


def _attention_macs(batch: int, length: int, dim: int, heads: int) -> int:
    projections = batch * length * dim * (3 * dim) + batch * length * dim * dim  # in_proj (q, k, v) + out_proj
    products = 2 * batch * heads * length * length * (dim // heads)  # Q @ K^T and A @ V
    return projections + products


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_counts_its_matmuls(need_weights):
    batch, length, dim, heads = 2, 10, 16, 4
    mha = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    x = torch.randn(batch, length, dim)
    inputs = {"query": x, "key": x, "value": x, "need_weights": need_weights}
    assert count_gflops(mha, inputs, attention=True) * 1e9 == pytest.approx(_attention_macs(batch, length, dim, heads))
    # the inference fast path (one opaque op) is only switched off while counting
    assert torch.backends.mha.get_fastpath_enabled()


def test_transformer_encoder_layer_fast_path_is_seen():
    batch, length, dim, heads, ffn = 2, 7, 16, 4, 32
    for batch_first in (True, False):
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, batch_first=batch_first).eval()
        x = torch.randn(batch, length, dim) if batch_first else torch.randn(length, batch, dim)
        expected = _attention_macs(batch, length, dim, heads) + 2 * batch * length * dim * ffn
        assert count_gflops(layer, x, attention=True) * 1e9 == pytest.approx(expected)


class BatchedMatMul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class SDPA(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


# CPU: equal head dims run the fused flash kernel (missing from PyTorch's flop table), unequal ones the
# math path (bmm); meta always decomposes.
@pytest.mark.parametrize("device, d_v", [("cpu", 8), ("cpu", 4), ("meta", 8)])
def test_scaled_dot_product_attention_counted_on_every_kernel(device, d_v):
    b, h, s_q, s_k, d = 2, 3, 5, 7, 8
    q, k, v = (torch.randn(*shape, device=device) for shape in ((b, h, s_q, d), (b, h, s_k, d), (b, h, s_k, d_v)))
    expected = b * h * s_q * s_k * d + b * h * s_q * s_k * d_v
    assert count_gflops(SDPA(), (q, k, v), attention=True) * 1e9 == pytest.approx(expected)


def test_mobilenet_v2_features_match_official_constant():
    with torch.device("meta"):
        model = mobilenet_v2().eval()
        frame = torch.empty(1, 3, 224, 224)
    ours = count_gflops(model.features, frame)  # "without fc", as the constant says
    assert ours == pytest.approx(OFFICIAL_MBV2_224, rel=0.03)
    # The official counter also charged every BatchNorm once per channel; nothing else differs.
    assert ours + _bn_channels(model) / 1e9 == pytest.approx(OFFICIAL_MBV2_224, abs=1e-12)
    assert count_gflops(model, frame) == pytest.approx(ours + 1280 * 1000 / 1e9, abs=1e-12)  # + classifier


class FeatVec(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.get_featvec(x)


@pytest.mark.parametrize("patch", sorted(OFFICIAL_R50))
def test_resnet50_features_match_official_constants(patch):
    with torch.device("meta"):
        model = resnet50().eval()
        x = torch.empty(1, 3, patch, patch)
    ours = count_gflops(FeatVec(model), x)
    assert ours == pytest.approx(OFFICIAL_R50[patch], rel=0.03)
    assert ours + _bn_channels(model) / 1e9 == pytest.approx(OFFICIAL_R50[patch], abs=1e-12)


def test_count_scales_with_batch():
    with torch.device("meta"):
        model = resnet50().eval()
    one = count_gflops(model, torch.empty(1, 3, 96, 96, device="meta"))
    assert count_gflops(model, torch.empty(4, 3, 96, 96, device="meta")) == pytest.approx(4 * one, rel=1e-12)


def test_gflops_by_module_partitions_the_total():
    model = ConvLinear().eval()
    x = torch.randn(2, 3, 10, 12)
    parts = gflops_by_module(model, x)
    assert parts == pytest.approx({"conv": 2 * 8 * 5 * 6 * 27 / 1e9, "fc": 2 * 5 * 8 / 1e9})

    class WithFunctional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = ConvLinear()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits, _ = self.inner(x)
            return logits @ logits.T  # work outside any child module

    outer = WithFunctional().eval()
    total = count_gflops(outer, x)
    depth2 = gflops_by_module(outer, x, depth=2)
    assert set(depth2) == {"inner.conv", "inner.fc", "(rest)"}
    assert depth2["(rest)"] == pytest.approx(2 * 2 * 5 / 1e9)
    assert sum(depth2.values()) == pytest.approx(total)
    with pytest.raises(VideployError, match="depth"):
        gflops_by_module(outer, x, depth=0)


def test_attention_false_drops_only_attention_products():
    from videploy.models.blocks.vit import Attention

    batch, length, dim, heads = 2, 7, 16, 4
    layer = Attention(dim, heads, qkv_bias=True).eval()  # the ViT attention our STAM uses
    x = torch.randn(batch, length, dim)
    with_weights_only = batch * length * dim * 4 * dim  # qkv + proj
    assert count_gflops(layer, x, attention=False) * 1e9 == pytest.approx(with_weights_only)
    assert count_gflops(layer, x, attention=True) * 1e9 == pytest.approx(_attention_macs(batch, length, dim, heads))
    q = torch.randn(2, 3, 5, 8)
    assert count_gflops(SDPA(), (q, q, q), attention=False) == 0.0
    assert count_gflops(ConvLinear().eval(), torch.randn(1, 3, 8, 8), attention=False) == count_gflops(ConvLinear().eval(), torch.randn(1, 3, 8, 8))
    # a plain batched matmul (e.g. gathered per-step classifier weights) is not an attention product
    a, b = torch.randn(3, 4, 6), torch.randn(3, 6, 5)
    assert count_gflops(BatchedMatMul(), (a, b)) * 1e9 == pytest.approx(3 * 4 * 6 * 5)
    with torch.device("meta"):  # meta lowers SDPA to plain bmm: still recognised as attention
        qm = torch.empty(2, 3, 5, 8)
    assert count_gflops(SDPA(), (qm, qm, qm)) == 0.0
    assert count_gflops(SDPA(), (qm, qm, qm), attention=True) * 1e9 == pytest.approx(2 * 3 * 5 * 5 * 16)
    assert count_gflops(SDPA(), (q, q, q)) == 0.0  # the default is the papers' convention


def test_gflops_by_module_sums_children_of_uncalled_containers():
    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)])  # a ModuleList is never called

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = block(x)
            return x

    parts = gflops_by_module(Stack(), torch.randn(3, 4))
    assert parts == pytest.approx({"blocks": (3 * 4 * 4 + 3 * 4 * 2) / 1e9})


def test_stam_16_matches_published_cost_without_attention_products():
    """STAM's README: STAM-16 = 270 GFLOPs; that figure leaves out Q @ K^T and A @ V (see flops.py)."""
    import videploy.models as vm

    if "stam_16" not in vm.REGISTRY:
        pytest.skip("stam_16 is not registered")
    with torch.device("meta"):
        model = vm.create("stam_16")
        video = torch.empty(1, 16, 3, 224, 224)
    assert count_gflops(model, video) == pytest.approx(270, rel=0.03)  # the default convention
    assert count_gflops(model, video, attention=True) > count_gflops(model, video) + 10  # ViT-B/16 attention: ~0.7 G/frame
