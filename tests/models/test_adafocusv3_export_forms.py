"""Export-only op patterns of AdaFocusV3 compute what the official (eager) modules compute."""

from __future__ import annotations

import io
import warnings

import onnx
import torch

from videploy.models.adafocusv3_parts import SpatialPolicy


def test_spatial_policy_as_2d_convs_equals_the_3d_convs():
    """The exported policy runs its 3x3x3 convs as 3x3 convs over neighbour-stacked frames (onnxruntime
    runs those 1.3x faster); same actions, including the first and last frame's zero padding in time."""
    torch.manual_seed(0)
    policy = SpatialPolicy(stn_feature_dim=24, hidden_dim=16, num_glance_segments=5).eval()
    for m in policy.modules():
        if isinstance(m, torch.nn.BatchNorm3d):  # non-trivial running statistics, so they matter
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    frames = torch.rand(3 * 5, 24, 7, 7) * 4
    with torch.no_grad():
        eager = policy(frames)
        exported = policy._frames_forward(frames)
    assert exported.shape == eager.shape == (15, 4)
    torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-6)
    # and an export really writes it so: no 3-D convolution left in the graph
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(policy, (frames,), f, dynamo=False, opset_version=17)
    convs = [n for n in onnx.load_from_string(f.getvalue()).graph.node if n.op_type == "Conv"]
    assert convs and all(len(a.ints) == 2 for n in convs for a in n.attribute if a.name == "kernel_shape")
