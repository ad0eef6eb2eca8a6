"""Checks every exported graph must pass before it goes into a bundle.

1. :func:`check_onnx`: ``onnx.checker.check_model(full_check=True)``, which runs strict shape and
   type inference over the whole graph, on a model that must fit in one protobuf (< 2 GB).
2. :func:`tensorrt_problems` / :func:`check_tensorrt_compatible`: walk the graph (subgraphs and
   local functions too) and refuse what TensorRT's ONNX parser rejects, so a bundle never fails
   later, on the target device, at ``videploy build`` time. The table follows onnx-tensorrt's
   ``docs/operators.md`` for TensorRT 10.x ("N" rows, plus the restrictions that concern graphs
   a PyTorch export can produce).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from videploy.errors import VideployError
from videploy.optional import require

if TYPE_CHECKING:  # pragma: no cover
    import onnx

# protobuf's hard limit for one serialized message
PROTO_LIMIT = 2**31 - 1

# Operators onnx-tensorrt does not parse (TensorRT 10.x support matrix).
TENSORRT_UNSUPPORTED = frozenset(
    {
        "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor",
        "CenterCropPad", "Col2Im", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det",
        "DynamicQuantizeLinear", "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool",
        "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement",
        "OptionalHasElement", "QLinearConv", "QLinearMatMul", "RegexFullMatch", "SequenceAt",
        "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
        "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer",
        "StringSplit", "TfIdfVectorizer", "Unique",
    }
)
# Random ops parse, but an inference graph that samples noise cannot match PyTorch: a bug upstream.
RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"})
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Problem:
    """One node TensorRT would reject: where it is and why."""

    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.op_type} node {self.node!r}: {self.reason}"


def check_onnx(model: "onnx.ModelProto", role: str) -> None:
    """Run the full ONNX checker (strict shape inference); raise a VideployError naming the graph."""
    onnx = require("onnx", "checking ONNX graphs")
    size = model.ByteSize()
    if size > PROTO_LIMIT:
        raise VideployError(
            f"graph '{role}' is {size / 2**30:.2f} GiB, over protobuf's 2 GiB limit for a self-contained .onnx file; "
            "videploy bundles keep weights inside the graph, so this model is too large to export as one file"
        )
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise VideployError(f"graph '{role}' fails onnx.checker.check_model(full_check=True): {exc}") from exc


def _walk(graph: "onnx.GraphProto", prefix: str = "") -> Iterator[tuple[str, "onnx.NodeProto"]]:
    onnx = require("onnx", "checking ONNX graphs")
    for node in graph.node:
        yield prefix, node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _walk(attr.g, f"{prefix}{node.name}/{attr.name}/")
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for i, g in enumerate(attr.graphs):
                    yield from _walk(g, f"{prefix}{node.name}/{attr.name}[{i}]/")


def _ranks(model: "onnx.ModelProto") -> dict[str, int]:
    """Rank of every tensor whose shape inference knows it."""
    onnx = require("onnx", "checking ONNX graphs")
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    ranks: dict[str, int] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    for init in g.initializer:
        ranks[init.name] = len(init.dims)
    return ranks


def _constant_bool(model: "onnx.ModelProto", name: str) -> bool | None:
    """The value of a constant boolean scalar tensor ``name`` (initializer or Constant node), else None."""
    onnx = require("onnx", "checking ONNX graphs")
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return bool(numpy_helper.to_array(init).all())
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return bool(numpy_helper.to_array(onnx.helper.get_attribute_value(attr)).all())
    return None


def tensorrt_problems(model: "onnx.ModelProto") -> list[Problem]:
    """Every node of ``model`` that TensorRT's ONNX parser would refuse (empty list: none)."""
    onnx = require("onnx", "checking ONNX graphs")
    problems: list[Problem] = []
    local_functions = {(f.domain, f.name) for f in model.functions}
    ranks: dict[str, int] | None = None
    nodes = list(_walk(model.graph))
    for f in model.functions:
        nodes.extend((f"{f.name}/", n) for n in f.node)
    for prefix, node in nodes:
        where = prefix + (node.name or node.output[0])
        op = node.op_type
        if node.domain not in DEFAULT_DOMAINS:
            if (node.domain, op) in local_functions:
                continue  # its body is walked above
            problems.append(Problem(where, op, f"custom op from domain {node.domain!r}; TensorRT needs a plugin for it"))
            continue
        if op in RANDOM_OPS:
            problems.append(Problem(where, op, "random sampling in an inference graph (a training-only path was exported)"))
        elif op in TENSORRT_UNSUPPORTED:
            hint = " build the sampling grid from primitive ops and use 4-D GridSample" if op == "AffineGrid" else ""
            problems.append(Problem(where, op, f"not supported by TensorRT's ONNX parser;{hint}" if hint else "not supported by TensorRT's ONNX parser"))
        elif op == "GridSample":
            if ranks is None:
                ranks = _ranks(model)
            rank = ranks.get(node.input[0])
            if rank != 4:
                problems.append(Problem(where, op, f"TensorRT parses GridSample only on 4-D inputs (N, C, H, W); this input has rank {rank}"))
        elif op == "Dropout":
            training = node.input[2] if len(node.input) > 2 and node.input[2] else None
            if training is not None and _constant_bool(model, training) is not False:
                problems.append(Problem(where, op, "Dropout in training mode (its training_mode input is not a constant False); export the module in eval mode"))
        elif op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            problems.append(Problem(where, op, "MaxPool's Indices output is not supported by TensorRT"))
        elif op == "LayerNormalization" and any(o for o in node.output[1:]):
            problems.append(Problem(where, op, "only the first output (Y) of LayerNormalization is supported by TensorRT"))
        elif op == "TopK":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("sorted", 1) != 1:
                problems.append(Problem(where, op, "TensorRT supports only sorted=1 TopK"))
        elif op == "ScatterND":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            red = attrs.get("reduction", b"none")
            if (red.decode() if isinstance(red, bytes) else red) != "none":
                problems.append(Problem(where, op, "TensorRT supports ScatterND only with reduction='none'"))
        elif op == "Resize":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("antialias", 0):
                problems.append(Problem(where, op, "antialiased Resize is not supported by TensorRT"))
    return problems


def check_tensorrt_compatible(model: "onnx.ModelProto", role: str) -> None:
    """Raise a VideployError listing every node of graph ``role`` that TensorRT would reject."""
    problems = tensorrt_problems(model)
    if problems:
        listed = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise VideployError(
            f"graph '{role}' contains {len(problems)} op(s) that TensorRT's ONNX parser rejects:\n  {listed}{more}\n"
            "change the model code so these ops are not emitted (the bundle would not build on a TensorRT device)"
        )
