"""The TensorRT op check and the full ONNX check, on hand-built graphs and on real exports."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from videploy.errors import VideployError
from videploy.export.checks import check_onnx, check_tensorrt_compatible, tensorrt_problems


def _model(nodes, inputs, outputs, initializers=(), opset=20, functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions))
    return m


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_affine_grid_is_refused():
    m = _model(
        [helper.make_node("AffineGrid", ["theta", "size"], ["grid"], name="ag")],
        [_vi("theta", [1, 2, 3])],
        [_vi("grid", [1, 4, 4, 2])],
        [numpy_helper.from_array(np.array([1, 1, 4, 4], dtype=np.int64), "size")],
    )
    (p,) = tensorrt_problems(m)
    assert p.op_type == "AffineGrid" and "primitive ops" in p.reason
    with pytest.raises(VideployError, match="(?s)graph 'glance'.*AffineGrid node 'ag'"):
        check_tensorrt_compatible(m, "glance")


def test_grid_sample_rank():
    four = _model(
        [helper.make_node("GridSample", ["x", "grid"], ["y"], name="gs4")],
        [_vi("x", [1, 3, 8, 8]), _vi("grid", [1, 4, 4, 2])],
        [_vi("y", [1, 3, 4, 4])],
    )
    assert tensorrt_problems(four) == []
    five = _model(
        [helper.make_node("GridSample", ["x", "grid"], ["y"], name="gs5")],
        [_vi("x", [1, 3, 2, 8, 8]), _vi("grid", [1, 2, 4, 4, 3])],
        [_vi("y", [1, 3, 2, 4, 4])],
    )
    (p,) = tensorrt_problems(five)
    assert p.op_type == "GridSample" and "rank 5" in p.reason


def test_dropout_training_mode():
    def dropout(training: bool | None):
        inputs = ["x", "ratio"] + (["train"] if training is not None else [])
        inits = [numpy_helper.from_array(np.array(0.5, dtype=np.float32), "ratio")]
        if training is not None:
            inits.append(numpy_helper.from_array(np.array(training), "train"))
        return _model([helper.make_node("Dropout", inputs, ["y"], name="do")], [_vi("x", [2, 3])], [_vi("y", [2, 3])], inits)

    assert tensorrt_problems(dropout(None)) == []
    assert tensorrt_problems(dropout(False)) == []
    (p,) = tensorrt_problems(dropout(True))
    assert "training mode" in p.reason
    # a training flag fed from outside the graph is not provably False
    m = _model(
        [helper.make_node("Dropout", ["x", "", "train"], ["y"], name="do")],
        [_vi("x", [2, 3]), _vi("train", [], TensorProto.BOOL)],
        [_vi("y", [2, 3])],
    )
    assert [p.op_type for p in tensorrt_problems(m)] == ["Dropout"]


def test_custom_domain_and_random_ops_and_subgraphs():
    custom = _model([helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft", name="g")], [_vi("x", [2])], [_vi("y", [2])])
    custom.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    (p,) = tensorrt_problems(custom)
    assert "com.microsoft" in p.reason
    rnd = _model([helper.make_node("RandomNormalLike", ["x"], ["y"], name="r")], [_vi("x", [2])], [_vi("y", [2])])
    assert "random" in tensorrt_problems(rnd)[0].reason
    # an unsupported op hidden in an If branch is found too
    then_g = helper.make_graph([helper.make_node("Unique", ["x"], ["u"], name="uq")], "then", [], [_vi("u", [None])])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["v"])], "else", [], [_vi("v", [None])])
    cond = _model(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="if")],
        [_vi("c", [], TensorProto.BOOL), _vi("x", [4])],
        [_vi("y", [None])],
    )
    (p,) = tensorrt_problems(cond)
    assert p.op_type == "Unique" and p.node.startswith("if/then_branch/")


def test_local_function_bodies_are_walked():
    fn = helper.make_function("videploy.test", "Fn", ["a"], ["b"], [helper.make_node("AffineGrid", ["a", "s"], ["b"])], opset_imports=[helper.make_opsetid("", 20)])
    m = _model([helper.make_node("Fn", ["x"], ["y"], domain="videploy.test", name="call")], [_vi("x", [1, 2, 3])], [_vi("y", None)], functions=[fn])
    m.opset_import.append(helper.make_opsetid("videploy.test", 1))
    assert [p.op_type for p in tensorrt_problems(m)] == ["AffineGrid"]


def test_check_onnx_reports_type_errors():
    bad = _model([helper.make_node("Add", ["x", "i"], ["y"])], [_vi("x", [2]), _vi("i", [2], TensorProto.INT64)], [_vi("y", [2])])
    with pytest.raises(VideployError, match="graph 'main' fails onnx.checker"):
        check_onnx(bad, "main")


def test_five_d_grid_sample_model_is_refused_at_export(tmp_path):
    """A model that samples with 5-D GridSample cannot be exported, and leaves nothing behind."""
    from tests.export.tiny_models import TinyAdaFocus
    from videploy.export.api import export_bundle

    out = tmp_path / "bad"
    with pytest.raises(VideployError, match=r"(?s)graph 'local'.*GridSample.*rank 5"):
        export_bundle(TinyAdaFocus(grid_5d=True), out, name="bad")
    assert list(tmp_path.iterdir()) == []
