"""OpenVINO runs AdaFocusV3's focus-frame selection exactly, at every batch size."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from videploy.models.adafocusv3_parts import sample_frame_indices


def test_focus_frame_indices_match_torch_on_every_row():
    """OpenVINO 2026.4's CPU plugin summed an int64 cast of a comparison wrongly for every row after
    the first (focus indices of -1 at batch 2); the selection counts in float32 now. Exact integers
    expected, on many random policies and a batch of 5."""
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'videploy[openvino]')")
    S, TG, TF = 48, 16, 16

    class Select(torch.nn.Module):
        def forward(self, w):
            return sample_frame_indices(torch.softmax(w, dim=1), S, TG, TF)

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Select(), (torch.randn(2, TG),), f, input_names=["w"], output_names=["idx"], dynamic_axes={"w": {0: "b"}}, dynamo=False, opset_version=17)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(f.getvalue(), b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for seed in range(10):
        w = np.random.default_rng(seed).standard_normal((5, TG)).astype(np.float32) * 3
        expected = Select()(torch.from_numpy(w)).numpy()
        got = np.asarray(compiled({"w": w})[0])
        np.testing.assert_array_equal(got, expected)
        assert got.min() >= 0 and got.max() < S


def _onnx(fn, width: int = 4) -> bytes:
    class M(torch.nn.Module):
        def forward(self, w):
            return fn(w)

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(M(), (torch.randn(2, width),), f, input_names=["w"], output_names=["o"], dynamic_axes={"w": {0: "b"}}, dynamo=False, opset_version=17)
    return f.getvalue()


def test_graphs_with_the_miscounted_pattern_are_refused_by_name():
    """Bundles exported before the fix still hold the pattern: the backend refuses them with what to do."""
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'videploy[openvino]')")
    from videploy.errors import VideployError
    from videploy.runtime.backends.openvino import _refuse_miscounted_sum

    core = ov.Core()
    old = core.read_model(_onnx(lambda w: ((w > 0).cumsum(dim=1) == 0).to(torch.int64).sum(dim=1)), b"")
    with pytest.raises(VideployError, match="re-export the bundle.*--backend onnxruntime"):
        _refuse_miscounted_sum(old, "policy", "policy.onnx")
    fixed = core.read_model(_onnx(lambda w: ((w > 0).cumsum(dim=1) == 0).to(torch.float32).sum(dim=1).to(torch.int64)), b"")
    _refuse_miscounted_sum(fixed, "policy", "policy.onnx")  # counted in float: accepted
