"""ONNX fp32 -> fp16 conversion (for TensorRT 11's strongly typed fp16 engines), run with onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from videploy.export.fp16 import FP16_MAX, convert_to_fp16
from videploy.export.verify import batch_of, real_views


def _run(model: onnx.ModelProto, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-12))


def _elem_types(model):
    return {vi.name: vi.type.tensor_type.elem_type for vi in list(model.graph.input) + list(model.graph.output)}


def test_fp16_clip_graph_agrees_on_real_frames(tiny_clip_bundle):
    model, result = tiny_clip_bundle
    fp32 = onnx.load(str(result.bundle / "main.onnx"))
    fp16 = convert_to_fp16(fp32)
    # I/O stays float32; weights are float16
    assert _elem_types(fp16) == _elem_types(fp32)
    floats = [t for t in fp16.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    ln_inputs = {i for n in fp16.graph.node if n.op_type == "LayerNormalization" for i in n.input}
    assert any(t.data_type == TensorProto.FLOAT16 for t in floats)
    assert all(t.data_type == TensorProto.FLOAT16 for t in floats if t.name not in ln_inputs)
    # LayerNormalization runs in fp32 between casts (TensorRT's advice for fp16 networks)
    producers = {o: n for n in fp16.graph.node for o in n.output}
    for n in fp16.graph.node:
        if n.op_type == "LayerNormalization":
            src = producers[n.input[0]]
            assert src.op_type == "Cast" and src.attribute[0].i == TensorProto.FLOAT
    view, _ = real_views(model.preprocessing())
    x = batch_of(view, 2)
    ref = _run(fp32, {"video": x})["logits"]
    got = _run(fp16, {"video": x})["logits"]
    assert got.dtype == np.float32
    assert _rel(got, ref) < 1e-2
    assert 1e-6 < _rel(got, ref)  # it really computed in reduced precision


def test_fp16_adafocus_graphs_agree(tiny_ada_bundle):
    _, result = tiny_ada_bundle
    rng = np.random.default_rng(0)
    for g in result.manifest.graphs:
        fp32 = onnx.load(str(result.bundle / g.file))
        fp16 = convert_to_fp16(fp32)
        feeds = {}
        for t in g.inputs:
            shape = [2 if d == "batch" else d for d in t.shape]
            feeds[t.name] = np.zeros(shape, np.int64) + 1 if t.dtype == "int64" else rng.random(shape, dtype=np.float32)
        ref, got = _run(fp32, feeds), _run(fp16, feeds)
        for name in ref:
            assert got[name].dtype == ref[name].dtype
            if ref[name].dtype == np.int64:
                np.testing.assert_array_equal(got[name], ref[name])
            else:
                assert _rel(got[name], ref[name]) < 1e-2, (g.role, name)


def test_fp16_clips_large_constants_and_keeps_fp32_only_inputs():
    big = numpy_helper.from_array(np.array([1e6, -1e6, 3.0, -np.inf], dtype=np.float32), "big")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    nodes = [
        helper.make_node("Add", ["x", "big"], ["y"]),
        helper.make_node("Resize", ["img", "", "scales"], ["up"], mode="nearest"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]), helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4]), helper.make_tensor_value_info("up", TensorProto.FLOAT, [1, 1, 4, 4])],
        initializer=[big, scales],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    h = convert_to_fp16(m)
    converted = {t.name: numpy_helper.to_array(t) for t in h.graph.initializer}
    assert converted["big"].dtype == np.float16
    np.testing.assert_array_equal(converted["big"], np.array([FP16_MAX, -FP16_MAX, 3.0, -np.inf], np.float16))
    out = _run(h, {"x": np.ones(4, np.float32), "img": np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)})
    assert out["up"].shape == (1, 1, 4, 4) and out["up"].dtype == np.float32
    np.testing.assert_array_equal(out["y"][2:], [4.0, -np.inf])


def test_fp16_without_keep_io_types():
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    h = convert_to_fp16(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=10), keep_io_types=False)
    assert set(_elem_types(h).values()) == {TensorProto.FLOAT16}
    out = _run(h, {"x": np.array([-1, 2], np.float16)})["y"]
    assert out.dtype == np.float16 and out.tolist() == [0, 2]


def test_fp16_refuses_control_flow():
    from videploy.errors import VideployError

    sub = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "b", [], [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])])
    g = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=sub, else_branch=sub)],
        "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(VideployError, match="control flow"):
        convert_to_fp16(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=10))
