"""fp32 -> fp16 ONNX conversion with ``onnx`` alone, for TensorRT's strongly typed networks.

TensorRT 11 builds only strongly typed networks: the precision is whatever the ONNX graph says,
so an fp16 engine needs an fp16 graph. The conversion:

* float32 initializers, ``Constant`` values, ``ConstantOfShape`` fill values and ``Cast(to=float)``
  targets become float16 (finite values are clipped to fp16's range, +-65504, so a large mask
  constant stays large instead of turning into inf). Attributes that ONNX *defaults* to float32
  count too: a ``ConstantOfShape`` without ``value`` (float32 zeros), ``Constant(value_float[s])``
  and ``Random*`` without ``dtype`` get explicit float16 ones;
* the invariant is then checked per tensor: every tensor that was float32 is float16 unless it
  lives in an fp32 island. A producer the rules above do not know (an op whose output type a
  default or a domain fixes) still yields float32; it gets a ``Cast`` to float16 after it, so
  its consumers never mix types;
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


def _set_tensor_attribute(node: "onnx.NodeProto", name: str, value: np.ndarray) -> None:
    from onnx import helper, numpy_helper

    _drop_attribute(node, name)
    node.attribute.append(helper.make_attribute(name, numpy_helper.from_array(value)))


def _convert_float_attributes(node: "onnx.NodeProto") -> None:
    """Rewrite the attributes through which ``node`` (a default-domain op) makes float32 tensors."""
    from onnx import TensorProto, helper

    attrs = {a.name: a for a in node.attribute}
    op = node.op_type
    if op == "Constant":
        if "value" in attrs:
            _convert_tensor(attrs["value"].t)
        elif "value_float" in attrs:
            _set_tensor_attribute(node, "value", _to_fp16_array(np.array(attrs["value_float"].f, np.float32)))
            _drop_attribute(node, "value_float")
        elif "value_floats" in attrs:
            _set_tensor_attribute(node, "value", _to_fp16_array(np.array(list(attrs["value_floats"].floats), np.float32)))
            _drop_attribute(node, "value_floats")
    elif op == "ConstantOfShape":
        if "value" in attrs:
            _convert_tensor(attrs["value"].t)
        else:  # ONNX's default fill value is a float32 zero
            _set_tensor_attribute(node, "value", np.zeros(1, np.float16))
    elif op == "Cast":
        if attrs["to"].i == TensorProto.FLOAT:
            attrs["to"].i = TensorProto.FLOAT16
    elif op in ("RandomNormal", "RandomUniform"):
        # dtype defaults to float32 here (the *Like variants default to their input's type)
        if "dtype" not in attrs:
            node.attribute.append(helper.make_attribute("dtype", TensorProto.FLOAT16))
        elif attrs["dtype"].i == TensorProto.FLOAT:
            attrs["dtype"].i = TensorProto.FLOAT16
    elif op in ("EyeLike", "RandomNormalLike", "RandomUniformLike", "Bernoulli"):
        if "dtype" in attrs and attrs["dtype"].i == TensorProto.FLOAT:
            attrs["dtype"].i = TensorProto.FLOAT16


def _drop_attribute(node: "onnx.NodeProto", name: str) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)


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


# A stray float32 producer is fixed where it starts; its consumers then see float16 and need nothing.
MAX_STRAY_PASSES = 16


def _cast_stray_float32(model: "onnx.ModelProto", intended_fp32: set[str], fresh) -> None:
    """Put a Cast to float16 after every node that still makes float32 where float16 is meant.

    Only the nodes where the float32 *starts* (none of their inputs is a stray float32 tensor) are
    fixed per pass; inference is rerun, so a chain downstream of one stray producer costs one Cast.
    """
    onnx = require("onnx", "converting graphs to fp16")
    from onnx import TensorProto, helper

    g = model.graph
    for _ in range(MAX_STRAY_PASSES):
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
        is_fp32 = {vi.name for vi in list(inferred.value_info) + list(inferred.output) if vi.type.tensor_type.elem_type == TensorProto.FLOAT}
        stray = {n for n in is_fp32 if n not in intended_fp32}
        if not stray:
            return
        nodes: list[onnx.NodeProto] = []
        fixed = 0
        for node in g.node:
            nodes.append(node)
            if any(i in stray for i in node.input):
                continue
            for j, name in enumerate(node.output):
                if name in stray:
                    wide = fresh(name)
                    node.output[j] = wide
                    intended_fp32.add(wide)
                    nodes.append(helper.make_node("Cast", [wide], [name], to=TensorProto.FLOAT16, name=f"{wide}_stray"))
                    fixed += 1
        del g.node[:]
        g.node.extend(nodes)
        if not fixed:
            return  # left for the strict check to report
    raise VideployError(f"fp16 conversion: float32 tensors remain after {MAX_STRAY_PASSES} passes; build fp32 engines or report this model")


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
    intended_fp32: set[str] = set()  # tensors this conversion makes float32 on purpose
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
        if node.domain in ("", "ai.onnx"):
            _convert_float_attributes(node)

        fp32_island = node.op_type in keep
        for i, name in enumerate(node.input):
            if name and name in floats and (fp32_island or (node.op_type, i) in FP32_ONLY_INPUTS):
                up = fresh(name)
                intended_fp32.add(up)
                new_nodes.append(helper.make_node("Cast", [node.input[i]], [up], to=TensorProto.FLOAT, name=f"{up}_up"))
                node.input[i] = up
        if fp32_island:
            casts_after = []
            for j, name in enumerate(node.output):
                if name and name in floats:
                    wide = fresh(name)
                    intended_fp32.add(wide)
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
            intended_fp32.add(vi.name)
            new_nodes.append(helper.make_node("Cast", [half], [vi.name], to=TensorProto.FLOAT, name=f"{half}_out"))
    else:
        for vi in g.output:
            if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
                vi.type.tensor_type.elem_type = TensorProto.FLOAT16

    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]
    _cast_stray_float32(src, intended_fp32, fresh)
    try:
        out = onnx.shape_inference.infer_shapes(src, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(out, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise VideployError(f"the fp16 conversion produced an inconsistent graph ({exc}); build fp32 engines or report this model") from exc
    return out
