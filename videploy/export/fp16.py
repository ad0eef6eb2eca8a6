"""fp32 -> fp16 ONNX conversion with ``onnx`` alone, for TensorRT's strongly typed networks.

TensorRT 11 builds only strongly typed networks: the precision is whatever the ONNX graph says,
so an fp16 engine needs an fp16 graph. The conversion:

* float32 initializers, ``Constant`` values, ``ConstantOfShape`` fill values and ``Cast(to=float)``
  targets become float16 (finite values are clipped to fp16's range, +-65504, so a large mask
  constant stays large instead of turning into inf);
* the graph's float32 inputs and outputs stay float32 (``keep_io_types``): a ``Cast`` follows each
  input and precedes each output, so the runtime and the manifest do not change;
* ops in ``keep_fp32`` (default ``LayerNormalization``: TensorRT warns that fp16 layer norms after
  attention overflow) run in float32 between casts, and so do inputs that ONNX types as float32
  only (``Resize``'s ``scales``);
* ``value_info`` is dropped and re-inferred, then the full checker proves the types are consistent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from videploy.errors import VideployError
from videploy.optional import require

if TYPE_CHECKING:  # pragma: no cover
    import onnx

FP16_MAX = float(np.finfo(np.float16).max)
DEFAULT_KEEP_FP32 = ("LayerNormalization",)
# (op_type, input index) slots whose type ONNX fixes to float32
FP32_ONLY_INPUTS = {("Resize", 2), ("Upsample", 1)}


def _to_fp16_array(a: np.ndarray) -> np.ndarray:
    finite = np.isfinite(a)
    clipped = np.where(finite, np.clip(a, -FP16_MAX, FP16_MAX), a)
    return clipped.astype(np.float16)


def _convert_tensor(t: "onnx.TensorProto") -> None:
    from onnx import TensorProto, numpy_helper

    if t.data_type != TensorProto.FLOAT:
        return
    t.CopyFrom(numpy_helper.from_array(_to_fp16_array(numpy_helper.to_array(t)), t.name))


def _float_tensors(model: "onnx.ModelProto") -> set[str]:
    """Names of every float32 tensor in the (shape-inferred) graph."""
    onnx = require("onnx", "converting graphs to fp16")
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    names = {i.name for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            names.add(vi.name)
    return names


def convert_to_fp16(model: "onnx.ModelProto", keep_io_types: bool = True, keep_fp32: Iterable[str] = DEFAULT_KEEP_FP32) -> "onnx.ModelProto":
    """An fp16 copy of ``model`` (the argument is not modified). Raises VideployError if the result does not type-check."""
    onnx = require("onnx", "converting graphs to fp16")
    from onnx import TensorProto, helper

    src = onnx.ModelProto()
    src.CopyFrom(model)
    g = src.graph
    for node in g.node:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise VideployError(f"fp16 conversion does not handle control flow ({node.op_type} node {node.name!r}); build the fp32 engine instead")
    floats = _float_tensors(src)
    keep = set(keep_fp32)
    new_nodes: list[onnx.NodeProto] = []
    counter = [0]

    def fresh(base: str) -> str:
        counter[0] += 1
        return f"{base}__fp16cast{counter[0]}"

    # graph inputs: keep fp32 at the boundary, cast once
    renamed_inputs: dict[str, str] = {}
    if keep_io_types:
        for vi in g.input:
            if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
                half = fresh(vi.name)
                new_nodes.append(helper.make_node("Cast", [vi.name], [half], to=TensorProto.FLOAT16, name=f"{half}_in"))
                renamed_inputs[vi.name] = half
    else:
        for vi in g.input:
            if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
                vi.type.tensor_type.elem_type = TensorProto.FLOAT16

    for init in g.initializer:
        _convert_tensor(init)

    for node in g.node:
        for i, name in enumerate(node.input):
            if name in renamed_inputs:
                node.input[i] = renamed_inputs[name]
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    _convert_tensor(attr.t)
                elif attr.name in ("value_float", "value_floats"):
                    pass  # typed float32 by definition; rare in exporter output
        elif node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value":
                    _convert_tensor(attr.t)
        elif node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
        elif node.op_type in ("EyeLike", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"):
            for attr in node.attribute:
                if attr.name == "dtype" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16

        fp32_island = node.op_type in keep
        for i, name in enumerate(node.input):
            if name and name in floats and (fp32_island or (node.op_type, i) in FP32_ONLY_INPUTS):
                up = fresh(name)
                new_nodes.append(helper.make_node("Cast", [node.input[i]], [up], to=TensorProto.FLOAT, name=f"{up}_up"))
                node.input[i] = up
        if fp32_island:
            casts_after = []
            for j, name in enumerate(node.output):
                if name and name in floats:
                    wide = fresh(name)
                    node.output[j] = wide
                    casts_after.append(helper.make_node("Cast", [wide], [name], to=TensorProto.FLOAT16, name=f"{wide}_down"))
            for a in node.attribute:
                if a.name == "stash_type":
                    a.i = TensorProto.FLOAT
            new_nodes.append(node)
            new_nodes.extend(casts_after)
        else:
            new_nodes.append(node)

    # graph outputs: the producer writes an fp16 tensor, a Cast restores the fp32 name
    if keep_io_types:
        for vi in g.output:
            if vi.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            half = fresh(vi.name)
            for node in new_nodes:
                for j, name in enumerate(node.output):
                    if name == vi.name:
                        node.output[j] = half
                for i, name in enumerate(node.input):
                    if name == vi.name:
                        node.input[i] = half
            new_nodes.append(helper.make_node("Cast", [half], [vi.name], to=TensorProto.FLOAT, name=f"{half}_out"))
    else:
        for vi in g.output:
            if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
                vi.type.tensor_type.elem_type = TensorProto.FLOAT16

    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]
    try:
        out = onnx.shape_inference.infer_shapes(src, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(out, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise VideployError(f"the fp16 conversion produced an inconsistent graph ({exc}); build fp32 engines or report this model") from exc
    return out
