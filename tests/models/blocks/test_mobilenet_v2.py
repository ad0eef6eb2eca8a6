"""MobileNetV2 (AdaFocusV3 glance network) against the official reference vector and key manifest."""

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
from videploy.models.blocks.mobilenet_v2 import MobileNetV2, make_divisible, mobilenet_v2

VECTOR = "uniadafocus_mobilenetv2_public"


@pytest.fixture(scope="module")
def reference(ref_dir):
    return reference_vector(ref_dir, VECTOR)


def test_reference_vector(reference):
    meta, arrays = reference
    family, kwargs = constructor_kwargs(meta["constructor"])
    model = vm.create(family, **kwargs)
    # strict: every official key present with its shape, nothing extra
    model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays["sd"].items()}, strict=True)
    frames = torch.from_numpy(arrays["in"]["frames"])
    with torch.no_grad():
        featmap, pooled = model.get_featmap(frames)
        logits, featmap_fwd = model(frames)
    out = arrays["out"]
    # tolerances: the reference README's recommendation (featmap values reach ~6, atol 2e-3)
    np.testing.assert_allclose(featmap.numpy(), out["featmap"], rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(pooled.numpy(), out["pooled"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits.numpy(), out["forward_logits"], rtol=1e-4, atol=1e-4)
    # upstream forward's second value is the feature map itself
    torch.testing.assert_close(featmap_fwd, featmap, rtol=0, atol=0)


def test_full_size_keys_and_shapes_match_official(ref_dir):
    path = ref_dir / "manifests" / "uniadafocus_actnet_full.shapes.json"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    official = [(k[len("global_CNN."):], v) for k, v in json.loads(path.read_text()).items() if k.startswith("global_CNN.")]
    with torch.device("meta"):  # shapes only, no memory or init cost
        model = mobilenet_v2(n_class=1000)
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == official
    assert model.last_channel == 1280


def test_registry_family_and_aliases():
    model = vm.create("mobilenet_v2", num_classes=7, image_size=64, width_mult=0.5)
    assert isinstance(model, MobileNetV2) and not model.training
    assert model.config.n_class == 7 and model.config.input_size == 64
    assert model.classifier.out_features == 7
    assert "mobilenet_v2" in vm.families(include_components=True)
    assert "mobilenet_v2" not in vm.available(include_families=True)  # a component, not a zoo model
    assert vm.get("mobilenet_v2").family.infer(model.state_dict()) == {"n_class": 7}


def test_width_multiplier_follows_official_rounding():
    assert make_divisible(24 * 1.4) == 40  # rounds up (torchvision would give 32)
    model = MobileNetV2(n_class=3, width_mult=1.4)
    assert model.last_channel == make_divisible(1280 * 1.4) == 1792
    assert model.features[1].conv[3].out_channels == 16  # the expansion-1 stage is never scaled
    assert model.features[2].conv[6].out_channels == 40
    small = MobileNetV2(n_class=3, width_mult=0.5)
    assert small.last_channel == 1280  # the head widens only above 1.0


def test_input_size_must_be_multiple_of_32():
    with pytest.raises(VideployError, match="multiple of 32"):
        MobileNetV2(input_size=100)


def test_residual_blocks_follow_shape_rule():
    model = mobilenet_v2()
    uses = [m.use_res_connect for m in model.features[1:18]]
    # shortcut exactly on the repeated (stride-1, same-width) blocks of each stage
    assert uses == [False, False, True, False, True, True, False, True, True, True, False, True, True, False, True, True, False]


def test_exports_with_dynamic_batch():
    torch.manual_seed(0)
    model = MobileNetV2(n_class=5, input_size=64, width_mult=0.5).eval()
    example = torch.randn(2, 3, 64, 64)
    program = export(model, (example,), dynamic_shapes={"x": {0: Dim("batch", min=1, max=64)}})
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        logits, featmap = program.module()(x)
        ref_logits, ref_featmap = model(x)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(featmap, ref_featmap, rtol=1e-5, atol=1e-6)
