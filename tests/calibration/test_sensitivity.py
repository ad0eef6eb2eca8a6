"""Which layers stay in float: the measurement-driven decision, and how layers are grouped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from videploy.calibration.int8 import sensitivity


def _three_layer_graph(path: Path) -> Path:
    """x -> Conv -> MatMul -> Gemm -> y: three weighted layers."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w_conv"),
        numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w_mm"),
        numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "w_fc"),
        numpy_helper.from_array(np.array([-1, 4], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w_conv"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
        helper.make_node("Reshape", ["p", "shape"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w_mm"], ["m"], name="mm"),
        helper.make_node("Gemm", ["m", "w_fc"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 8, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 5])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_groups_first_body_last(tmp_path):
    groups = sensitivity.node_groups(_three_layer_graph(tmp_path / "g.onnx"))
    assert [g.nodes for g in groups] == [("conv",), ("mm",), ("fc",)]
    assert groups[0].name.startswith("first layer") and groups[-1].name.startswith("last layer")


@pytest.mark.parametrize(
    "target, float_groups, quantized_any",
    [
        (0.99, (), True),  # everything quantized scores 0.99 exactly
        (0.995, ("fc",), True),  # the classifier hurts most: only it goes back to float
        (0.9985, ("fc", "mm"), True),
        (1.0, ("fc", "mm", "conv"), False),  # nothing can be quantized: the graph stays FP32
    ],
)
def test_worst_groups_go_back_to_float_until_the_target_is_met(tmp_path, monkeypatch, target, float_groups, quantized_any):
    model = _three_layer_graph(tmp_path / "g.onnx")
    penalty = {"conv": 0.0005, "mm": 0.0015, "fc": 0.008}
    floats_of: dict[str, set[str]] = {}

    def quantize(floats, out):
        floats_of[str(out)] = set(floats)
        return out

    def score(reference, candidate, feeds):
        return 1.0 - sum(p for n, p in penalty.items() if n not in floats_of[str(candidate)])

    monkeypatch.setattr(sensitivity, "graph_score", score)
    res = sensitivity.analyse("main", model, quantize, [], tmp_path / "w", target)
    assert res.full_score == pytest.approx(0.99)
    assert sorted(res.float_nodes) == sorted(float_groups)
    assert res.quantized_any == quantized_any
    if float_groups:
        assert min(s.score for s in res.groups) == pytest.approx(1 - penalty["fc"])
        assert len(res.groups) == 3 and ("stay in float" if quantized_any else "stays FP32") in res.reason()
    else:
        assert res.groups == () and "fully quantized" in res.reason()


def test_graph_score_is_one_for_the_same_graph_and_counts_integer_outputs(tmp_path):
    model = _three_layer_graph(tmp_path / "g.onnx")
    feeds = [{"x": np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)}]
    assert sensitivity.graph_score(model, model, feeds) == pytest.approx(1.0)
    assert sensitivity.output_score(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]])) == 0.75
    assert sensitivity.cosine(np.zeros(3), np.zeros(3)) == 1.0 and sensitivity.cosine(np.zeros(3), np.ones(3)) == 0.0


def test_a_float_group_is_narrowed_to_the_layers_that_hurt(tmp_path, monkeypatch):
    """Ten body layers in one group, only one of them sensitive: it alone stays in float."""
    model = tmp_path / "g.onnx"
    names = [f"l{i}" for i in range(12)]
    groups = [sensitivity.Group("first", ("l0",)), sensitivity.Group("body", tuple(names[1:11])), sensitivity.Group("last", ("l11",))]
    monkeypatch.setattr(sensitivity, "node_groups", lambda m, parts=4: groups)
    penalty = {n: 0.0001 for n in names}
    penalty["l7"] = 0.05
    floats_of: dict[str, set[str]] = {}

    def quantize(floats, out):
        floats_of[str(out)] = set(floats)
        return out

    monkeypatch.setattr(sensitivity, "graph_score", lambda r, c, f: 1.0 - sum(p for n, p in penalty.items() if n not in floats_of[str(c)]))
    res = sensitivity.analyse("glance", model, quantize, [], tmp_path / "w", 0.995)
    assert res.float_nodes == ("l7",) and res.quantized_any
    assert res.float_groups == ("layer 8 of 12 (l7)",)
    assert res.final_score >= 0.995
    # two sensitive layers in different halves: both, and only they, stay in float
    penalty["l2"] = 0.05
    res = sensitivity.analyse("glance", model, quantize, [], tmp_path / "w2", 0.995)
    assert sorted(res.float_nodes) == ["l2", "l7"] and res.float_groups == ("layers 3, 8 of 12",)
