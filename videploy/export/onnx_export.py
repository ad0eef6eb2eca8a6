"""One :class:`~videploy.models.base.GraphModule` -> one ONNX graph, with the torch dynamo exporter.

Choices, and why:

* ``torch.onnx.export(..., dynamo=True)``: the TorchScript exporter is deprecated; the dynamo one
  goes through ``torch.export`` and onnxscript's function library.
* Batch is dynamic in every graph (``torch.export.Dim("batch")`` on dimension 0 of every input), also
  for a "fixed" batch bundle: the graph stays general and the manifest's :class:`BatchRange` decides
  what TensorRT profiles are built for. The example inputs use batch 2 because ``torch.export``
  specialises a dimension traced at size 1.
* The model proto is taken from the ``ONNXProgram`` in memory (weights inline) and saved by us as
  one self-contained file: the exporter's own ``save`` writes external data by default.
* Every input and output gets the symbolic dimension name ``"batch"`` on axis 0, whatever the
  exporter called it (``s0``, ``batch``, or an expression), so manifest and graph agree.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import TYPE_CHECKING, Iterator, Sequence

from videploy.errors import VideployError
from videploy.optional import require

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from videploy.models.base import GraphModule

BATCH_DIM = "batch"
# LayerNormalization became one ONNX op in opset 17; lower opsets decompose it into ~10 ops that
# TensorRT then has to re-fuse (and runs in lower precision less accurately).
MIN_OPSET = 17
# Batch used for tracing: torch.export treats a dimension traced at size 1 as a constant.
TRACE_BATCH = 2


def default_opset() -> int:
    """The opset ``torch.onnx.export(dynamo=True)`` emits when none is asked for (20 for torch 2.5-2.13)."""
    require("torch", "exporting to ONNX")
    from torch.onnx import _constants

    return int(_constants.ONNX_DEFAULT_OPSET)


def check_opset(opset: int | None) -> None:
    """Refuse opsets below :data:`MIN_OPSET` with the reason."""
    if opset is not None and opset < MIN_OPSET:
        raise VideployError(
            f"opset {opset} is too old: videploy exports with opset >= {MIN_OPSET} so LayerNormalization stays one op "
            f"(TensorRT fuses it and keeps it accurate); leave --opset out to use the exporter's default"
        )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (torchvision-not-installed notices, deprecation warnings)."""
    names = ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export", "torch._export", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_graph(module: "GraphModule", role: str, opset: int | None = None) -> "onnx.ModelProto":
    """Export ``module`` (eval mode) to an in-memory ONNX model with a dynamic batch dimension.

    Inputs and outputs get the module's ``input_names`` / ``output_names``. Errors of the exporter
    become a :class:`VideployError` that names the graph role and the failing op where it can.
    """
    torch = require("torch", "exporting to ONNX")
    require("onnxscript", "exporting to ONNX")
    check_opset(opset)
    inputs = tuple(module.example_inputs(TRACE_BATCH))
    in_names = tuple(module.input_names)
    out_names = tuple(module.output_names)
    if len(inputs) != len(in_names):
        raise VideployError(
            f"graph '{role}' ({type(module).__name__}) declares inputs {list(in_names)} but example_inputs() "
            f"returned {len(inputs)} tensors; fix the module's input_names / example_inputs"
        )
    for name, t in zip(in_names, inputs):
        if t.ndim == 0 or t.shape[0] != TRACE_BATCH:
            raise VideployError(f"graph '{role}': example input {name!r} has shape {tuple(t.shape)}; dimension 0 must be the batch")
    batch = torch.export.Dim(BATCH_DIM, min=1)
    dynamic_shapes = tuple({0: batch} for _ in inputs)
    module = module.eval()
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                module,
                inputs,
                dynamo=True,
                input_names=list(in_names),
                output_names=list(out_names),
                opset_version=opset,
                dynamic_shapes=dynamic_shapes,
                optimize=True,
                verbose=False,
            )
    except torch.onnx.OnnxExporterError as exc:
        raise VideployError(f"torch.onnx.export failed for graph '{role}' ({type(module).__name__}): {_first_lines(exc)}") from exc
    if program is None:  # pragma: no cover - only the TorchScript path returns None
        raise VideployError(f"torch.onnx.export returned no program for graph '{role}'")
    model = program.model_proto
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != list(in_names) or got_out != list(out_names):
        raise VideployError(
            f"graph '{role}': exported inputs {got_in} / outputs {got_out} differ from the declared "
            f"{list(in_names)} / {list(out_names)}; a module output count that differs from output_names is the usual cause"
        )
    name_batch_dims(model)
    return model


def name_batch_dims(model: "onnx.ModelProto", name: str = BATCH_DIM) -> None:
    """Set axis 0 of every graph input and output to the symbolic dimension ``name`` (in place).

    The exporter names the input dimension after the ``Dim`` but may leave an expression or a
    fresh symbol on outputs; the symbol the inputs used is renamed everywhere in ``value_info`` too.
    """
    old: set[str] = set()
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if not dims:
            raise VideployError(f"graph tensor {vi.name!r} is a scalar; every input and output needs the batch as dimension 0")
        if dims[0].HasField("dim_param"):
            old.add(dims[0].dim_param)
        dims[0].Clear()
        dims[0].dim_param = name
    for vi in model.graph.value_info:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in old:
                d.dim_param = name


def opset_of(model: "onnx.ModelProto") -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise VideployError("the ONNX model imports no default-domain opset")


def _first_lines(exc: BaseException, n: int = 12) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    text = "\n".join(lines[:n])
    return text + ("\n..." if len(lines) > n else "")


def tensor_specs(values: Sequence["onnx.ValueInfoProto"]) -> list[dict]:
    """Manifest tensor specs (name, shape with symbolic names, dtype) read from graph inputs/outputs."""
    onnx = require("onnx", "reading ONNX graphs")
    out = []
    for vi in values:
        tt = vi.type.tensor_type
        shape: list[int | str] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                shape.append(d.dim_param)
            else:
                raise VideployError(f"graph tensor {vi.name!r} has an unnamed unknown dimension; export cannot describe it in the manifest")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        out.append({"name": vi.name, "shape": shape, "dtype": dtype})
    return out
