"""ResNet (AdaFocusV3 local network) against the official reference vector and key manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.export import Dim, export

import videploy.models as vm
from tests.conftest import reference_vector
from tests.reference_vectors import constructor_kwargs
from videploy.errors import VideployError
from videploy.models.blocks.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50

VECTOR = "uniadafocus_resnet_public"


@pytest.fixture(scope="module")
def reference(ref_dir):
    return reference_vector(ref_dir, VECTOR)


def test_reference_vector(reference):
    meta, arrays = reference
    family, kwargs = constructor_kwargs(meta["constructor"])
    assert kwargs["block"] == "Bottleneck"  # the sidecar passes the class by name
    model = vm.create(family, **kwargs)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays["sd"].items()}, strict=True)
    (patches,) = (torch.from_numpy(v) for v in arrays["in"].values())
    with torch.no_grad():
        featvec = model.get_featvec(patches)
        featmap, pooled = model.get_featmap(patches)
        logits = model(patches)
    out = arrays["out"]
    np.testing.assert_allclose(featvec.numpy(), out["featvec"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(featmap.numpy(), out["featmap_layer4"], rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(logits.numpy(), out["forward_logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pooled, featvec, rtol=0, atol=0)  # upstream's second value: the pooled vector


def test_full_size_resnet50_keys_and_shapes_match_official(ref_dir):
    path = ref_dir / "manifests" / "uniadafocus_actnet_full.shapes.json"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    official = [(k[len("local_CNN."):], v) for k, v in json.loads(path.read_text()).items() if k.startswith("local_CNN.")]
    with torch.device("meta"):
        model = resnet50()
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == official
    assert model.feature_dim == 2048


@pytest.mark.parametrize("block", ["Bottleneck", "bottleneck", "BOTTLENECK", Bottleneck, "models.resnet.Bottleneck"])
def test_block_by_class_or_name(block):
    model = vm.create("resnet", block=block, layers=[1, 1, 1, 1], num_classes=3)
    assert isinstance(model.layer1[0], Bottleneck) and model.config.block == "Bottleneck"
    assert not model.training


def test_unknown_block_is_a_user_error():
    with pytest.raises(VideployError, match="Bottleneck"):
        ResNet("Bottle", [1, 1, 1, 1])
    with pytest.raises(VideployError, match="layers"):
        ResNet("Bottleneck", [1, 1, 1])


def test_registry_create_and_infer():
    model = vm.create("resnet", block="Bottleneck", layers=[2, 2, 1, 1], num_classes=10)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [2, 2, 1, 1]
    assert model.fc.out_features == 10
    assert vm.get("resnet").family.infer(model.state_dict()) == {"num_classes": 10, "block": "Bottleneck", "layers": [2, 2, 1, 1]}
    basic = vm.create("resnet", block="BasicBlock", layers=[1, 2, 1, 1], num_classes=4)
    assert vm.get("resnet").family.infer(basic.state_dict()) == {"num_classes": 4, "block": "BasicBlock", "layers": [1, 2, 1, 1]}


def test_official_factories_parameter_counts():
    # torchvision-documented parameter counts of the same architectures (1000 classes)
    with torch.device("meta"):
        counts = {
            "resnet18": sum(p.numel() for p in resnet18().parameters()),
            "resnet50": sum(p.numel() for p in resnet50().parameters()),
        }
    assert counts == {"resnet18": 11_689_512, "resnet50": 25_557_032}
    assert isinstance(resnet18().layer1[0], BasicBlock)


def test_grouped_and_dilated_variants():
    with torch.device("meta"):
        model = ResNet("Bottleneck", [1, 1, 1, 1], groups=32, width_per_group=4)
        assert model.layer1[0].conv2.groups == 32 and model.layer1[0].conv2.out_channels == 128
    dilated = ResNet("Bottleneck", [1, 1, 1, 1], replace_stride_with_dilation=[False, True, True]).eval()
    with torch.no_grad():
        featmap, _ = dilated.get_featmap(torch.randn(1, 3, 64, 64))
    assert featmap.shape == (1, 2048, 8, 8)  # output stride 8 instead of 32
    assert dilated.layer4[0].conv2.dilation == (2, 2) and dilated.layer4[0].conv2.stride == (1, 1)


def test_zero_init_residual_starts_blocks_as_identity_branch():
    model = ResNet("BasicBlock", [1, 1, 1, 1], zero_init_residual=True)
    assert torch.count_nonzero(model.layer2[0].bn2.weight) == 0


def test_exports_with_dynamic_batch():
    torch.manual_seed(0)
    model = ResNet("Bottleneck", [1, 1, 1, 1], num_classes=5).eval()
    example = torch.randn(2, 3, 64, 64)
    program = export(model, (example,), dynamic_shapes={"x": {0: Dim("batch", min=1, max=64)}})
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-6)
