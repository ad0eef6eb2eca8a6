"""ONNX fp32 -> fp16 conversion (for TensorRT 11's strongly typed fp16 engines), run with onnxruntime.

The zoo test converts the real exported graphs of every model family and compares the fp16 graph
with the fp32 graph in onnxruntime (CPU), call by call on identical inputs, on frames of a real
video: ``max|fp16 - fp32| <= 1e-2 * max|fp32|``, cosine >= 0.999, top-1 agreement 100% on logits,
integer outputs within one of fp32 (AdaFocusV3's ``frame_indices`` are ``floor`` of a cumulative
policy weight: a sample that falls within fp16 rounding of a frame boundary may pick the
neighbouring frame, so a few may differ by one; the fraction is reported). An output whose fp32
magnitude stays below ``UNDERFLOW`` (fp16's smallest normal number is 6.1e-5) cannot be compared
in fp16 at all; that happens with random weights only (AdaFocusV3's glance feature maps are ~1e-8 at seed 0), is reported, and is allowed
for outputs other than logits. For the same reason the AdaFocusV3 policy graph, when its
real-frame feature maps are that small, is fed them scaled to a trained MobileNetV2's range
(max 6, ReLU6) with consistent pooled features. Caveat: onnxruntime's CPU provider runs fp16 ops
without an fp16 kernel in float32 between inserted casts, so these numbers bound the weight and
boundary rounding, not a GPU's fp16 arithmetic. Run with ``-s`` to see the per-graph report.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.export.conftest import one_per_family
from videploy.export.fp16 import FP16_MAX, convert_to_fp16
from videploy.export.verify import batch_of, real_views
from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
from videploy.runtime.compare import Tolerance, compare, record_calls

FP16_TOLERANCE = Tolerance(rtol=1e-2, atol=1e-6, min_cosine=0.999)
UNDERFLOW = 1e-4
# a trained MobileNetV2 feature map ends in ReLU6: real-frame features span [0, 6]
POLICY_FEATURE_MAX = 6.0
RANDOM_FEATURE_MAX = 1e-2  # below this the feature maps are a random-weight artifact and get scaled


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


def _opset20(nodes, inputs, outputs, initializer=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializer))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


def test_fp16_constant_of_shape_without_value_joins_fp16_tensors():
    """AdaFocusV3's policy pattern: ConstantOfShape with ONNX's default (float32 zero) fill, then Concat."""
    shape = numpy_helper.from_array(np.array([2, 1], np.int64), "shape")
    m = _opset20(
        [helper.make_node("ConstantOfShape", ["shape"], ["zeros"]), helper.make_node("Concat", ["zeros", "x"], ["y"], axis=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [shape],
    )
    h = convert_to_fp16(m)
    onnx.checker.check_model(h, full_check=True)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(_run(h, {"x": x})["y"], np.concatenate([np.zeros((2, 1), np.float32), x], axis=1))
    # the fill value became fp16 in place: no extra Cast for it
    assert [n.op_type for n in h.graph.node].count("Cast") == 2


def test_fp16_float_valued_constant_attributes():
    m = _opset20(
        [
            helper.make_node("Constant", [], ["a"], value_floats=[1.0, 2.0, 1e6]),
            helper.make_node("Constant", [], ["s"], value_float=0.5),
            helper.make_node("Add", ["x", "a"], ["t"]),
            helper.make_node("Mul", ["t", "s"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    h = convert_to_fp16(m)
    y = _run(h, {"x": np.ones(3, np.float32)})["y"]
    np.testing.assert_array_equal(y[:2], [1.0, 1.5])
    consts = {n.output[0]: n for n in h.graph.node if n.op_type == "Constant"}
    for out in ("a", "s"):
        (attr,) = consts[out].attribute
        assert attr.name == "value" and attr.t.data_type == TensorProto.FLOAT16
    np.testing.assert_array_equal(numpy_helper.to_array(consts["a"].attribute[0].t), np.array([1, 2, FP16_MAX], np.float16))
    assert numpy_helper.to_array(consts["s"].attribute[0].t).shape == ()


def test_fp16_casts_a_float32_producer_it_does_not_know():
    """TfIdfVectorizer always outputs float32; its consumers must not see mixed types."""
    pool = numpy_helper.from_array(np.array([1, 2, 3], np.int64), "pool")
    bias = numpy_helper.from_array(np.array([0.5, 0.25, 0.125], np.float32), "bias")
    tfidf = helper.make_node(
        "TfIdfVectorizer", ["tokens"], ["counts"], mode="TF", min_gram_length=1, max_gram_length=1, max_skip_count=0,
        ngram_counts=[0, 3], ngram_indexes=[0, 1, 2], pool_int64s=[1, 2, 3],
    )
    m = _opset20(
        [tfidf, helper.make_node("Add", ["counts", "bias"], ["y"])],
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [pool, bias],
    )
    h = convert_to_fp16(m)
    casts = [n for n in h.graph.node if n.op_type == "Cast" and n.input[0].startswith("counts")]
    assert len(casts) == 1 and casts[0].attribute[0].i == TensorProto.FLOAT16
    y = _run(h, {"tokens": np.array([1, 1, 3, 7], np.int64)})["y"]
    np.testing.assert_array_equal(y, [2.5, 0.25, 1.125])


def _zoo_fp16_rows(bundle, manifest):
    """Run fp32 and fp16 graphs on identical inputs along the model's own call sequence; one row per output and call."""
    fp32, fp16 = {}, {}
    for g in manifest.graphs:
        model = onnx.load(str(bundle / g.file))
        converted = convert_to_fp16(model)
        onnx.checker.check_model(converted, full_check=True)
        assert _elem_types(converted) == _elem_types(model), g.role
        fp32[g.role], fp16[g.role] = model, converted
    rows = []

    def run(role, feeds):
        top = float(feeds["featmap"].max()) if role == "policy" else 1.0
        if top < RANDOM_FEATURE_MAX:
            # random glance weights give ~1e-8 feature maps (fp16 underflow); the policy is shown the
            # same real-frame feature maps scaled to a trained network's range, and their pooled means
            assert top > 0
            featmap = feeds["featmap"] * np.float32(POLICY_FEATURE_MAX / top)
            feeds = {**feeds, "featmap": featmap, "global_feat": featmap.mean(axis=(3, 4))}
        ref, got = _run(fp32[role], feeds), _run(fp16[role], feeds)
        for name, r in ref.items():
            rows.append((role, name, float(np.abs(r).max()) if r.dtype.kind == "f" else None, compare(role, name, "", r, got[name], FP16_TOLERANCE)))
        return ref

    view, _ = real_views(manifest.preprocessing)
    # the inputs each graph really gets: the runtime's own chain (AdaFocusV3: every step), recorded
    for call in record_calls(OnnxRuntimeBackend(bundle, threads=1), batch_of(view, 2)):
        run(call.role, call.inputs)
    return rows


@pytest.mark.parametrize("name", one_per_family())
def test_fp16_zoo_family_graphs_agree_with_fp32_on_real_frames(name, zoo_export):
    result = zoo_export(name)
    rows = _zoo_fp16_rows(result.bundle, result.manifest)
    print(
        f"\nfp16 vs fp32 graph, {name} (onnxruntime CPU, real frames, batch 2): max|fp16-fp32| <= {FP16_TOLERANCE.rtol:g} * max|fp32|, "
        f"cosine >= {FP16_TOLERANCE.min_cosine}, logits top-1 100%, indices within 1"
    )
    compared_roles = set()
    for role, output, magnitude, r in rows:
        if magnitude is not None and magnitude < UNDERFLOW:
            print(f"  {role}.{output}: NOT COMPARED, max|fp32| = {magnitude:.2g} is below fp16's normal range (random weights)")
            assert output != "logits", f"{name} {role}.logits underflows fp16"
            continue
        if r.exact:  # max_abs: the largest difference of an index
            print(f"  {r.describe()}  {'ok' if r.max_abs <= 1 else 'FAIL'}")
            assert r.max_abs <= 1, f"{name}: {r.describe()}"
            continue
        print(f"  {r.describe()}  {'ok' if r.passed else 'FAIL'}")
        assert r.passed, f"{name}: {r.describe()}"
        if r.top1 is not None:
            assert r.top1 == 1.0, f"{name}: {r.describe()}"
        compared_roles.add(role)
    assert compared_roles == {g.role for g in result.manifest.graphs}
