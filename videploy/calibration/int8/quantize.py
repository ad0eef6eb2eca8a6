"""Quantizing one ONNX graph with ONNX Runtime's tools: calibration ranges (cached) and Q/DQ insertion.

Nothing here computes range statistics by hand: :func:`calibrate` runs ONNX Runtime's calibrator
(``create_calibrator``: entropy, percentile or min-max) over a :class:`FeedReader`, one batch at
a time so histograms are merged instead of every intermediate tensor of every batch being kept,
and :func:`quantize_graph` calls ``quantize_static`` with the cached ranges.

Two layouts (:data:`SCHEMES`), because the fastest INT8 form differs per runtime:

``int8`` (TensorRT)
    QuantizeLinear/DequantizeLinear pairs, int8 activations and weights, symmetric (zero point 0),
    per-channel weight scales, bias left in float, Q/DQ only in front of the layers with weights
    (Conv, ConvTranspose, MatMul, Gemm) -- the explicit-quantization form TensorRT 11 requires
    (it removed implicit calibration) and TensorRT 10 builds as well.
``int8-cpu`` (onnxruntime CPU)
    Q/DQ with uint8 activations (asymmetric) and int8 per-channel weights, bias in int32, on the
    weighted layers and the ops between them that onnxruntime runs in uint8 (:data:`CPU_OPS`), so
    activations stay quantized from one QLinearConv to the next: ONNX Runtime's own guidance for
    x86 CPUs, and measured faster here than the TensorRT form (``docs``: see the report).

Both are ordinary ONNX graphs: onnxruntime runs either on the CPU (the agreement report measures
both there).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from videploy.errors import VideployError
from videploy.optional import require

log = logging.getLogger(__name__)

METHODS = ("entropy", "percentile", "minmax")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# What onnxruntime's CPU kernels keep in uint8 between weighted layers (QLinearAdd, QLinear pooling,
# data movement). Softmax / LogSoftmax / Mul are left out: they compute AdaFocusV3's exit
# entropies, which decide where a video stops and must not lose precision.
CPU_OPS = (*WEIGHTED_OPS, "Add", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Resize", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")


@dataclass(frozen=True)
class Scheme:
    """One INT8 layout: the ``quantize_static`` arguments that define it."""

    variant: str  # the GraphSpec.variants key it is stored under
    target: str  # who it is for, in words (recorded in the manifest)
    activation: str  # "QInt8" | "QUInt8"
    weight: str = "QInt8"
    symmetric_activations: bool = True
    quantize_bias: bool = False
    op_types: tuple[str, ...] = WEIGHTED_OPS
    # False: Q/DQ only on the inputs of the quantized ops (TensorRT's placement: the next layer's
    # input quantizes an activation anyway, and graph outputs such as logits stay exact)
    quantize_outputs: bool = False
    per_channel: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "format": "QDQ",
            "activations": "int8 symmetric (zero point 0)" if self.symmetric_activations else f"{self.activation[1:].lower()} asymmetric",
            "weights": "int8 symmetric, per-channel" if self.per_channel else "int8 symmetric, per-tensor",
            "bias": "int32" if self.quantize_bias else "float",
            "quantized_ops": list(self.op_types),
            "outputs_quantized": self.quantize_outputs,
        }


TENSORRT = Scheme("int8", "TensorRT (explicit quantization, strongly typed on TensorRT 11)", "QInt8")
CPU = Scheme(
    "int8-cpu",
    "onnxruntime CPU execution provider",
    "QUInt8",
    symmetric_activations=False,
    quantize_bias=True,
    op_types=CPU_OPS,
    quantize_outputs=True,
)
SCHEMES = {s.variant: s for s in (TENSORRT, CPU)}


class FeedReader:
    """An ONNX Runtime ``CalibrationDataReader`` over prepared feeds (name -> array per batch)."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]):
        self.feeds = list(feeds)
        self._it: Iterator[Mapping[str, np.ndarray]] = iter(self.feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        nxt = next(self._it, None)
        return None if nxt is None else dict(nxt)

    def rewind(self) -> None:
        self._it = iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


def _ort_quant() -> Any:
    require("onnxruntime", "INT8 quantization")
    import onnxruntime.quantization as q

    return q


def _method(q: Any, method: str) -> Any:
    if method not in METHODS:
        raise VideployError(f"calibration method {method!r} is not one of {METHODS}")
    return {"entropy": q.CalibrationMethod.Entropy, "percentile": q.CalibrationMethod.Percentile, "minmax": q.CalibrationMethod.MinMax}[method]


def ranges_cacheable() -> bool:
    """True when this onnxruntime can store calibration ranges (``quantize_static(calibration_cache_path=)``)."""
    q = _ort_quant()
    return hasattr(q, "save_tensors_data") and "calibration_cache_path" in inspect.signature(q.quantize_static).parameters


def calibrate(model: Path, feeds: Sequence[Mapping[str, np.ndarray]], method: str, cache_file: Path | None = None) -> Any:
    """Activation ranges of every tensor of ``model`` over ``feeds`` (``TensorsData``); read from / written to ``cache_file``."""
    q = _ort_quant()
    if cache_file is not None and cache_file.is_file():
        return q.load_tensors_data(cache_file)
    if not feeds:
        raise VideployError(f"no calibration data for {model.name}; give more videos (or a larger --max-clips)")
    # the calibrators print their progress to stdout: keep it out of the CLI's output
    with tempfile.TemporaryDirectory(prefix="videploy-calib-") as tmp, _quiet_ort(), contextlib.redirect_stdout(io.StringIO()):
        calibrator = q.create_calibrator(
            Path(model),
            # only the tensors a scheme can quantize: the augmented model outputs each of them
            sorted(set(WEIGHTED_OPS) | set(CPU_OPS)),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=_method(q, method),
            extra_options={"symmetric": False} if method == "percentile" else {},
        )
        # one batch per collect_data call: the calibrator merges its statistics batch by batch
        # instead of holding every intermediate tensor of every batch at once
        for feed in feeds:
            calibrator.collect_data(FeedReader([feed]))
        ranges = calibrator.compute_data()
        del calibrator
    if cache_file is not None and hasattr(q, "save_tensors_data"):
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp_file = cache_file.with_suffix(".tmp")
        q.save_tensors_data(ranges, tmp_file)
        tmp_file.replace(cache_file)
    return ranges


def quantize_graph(
    model: Path,
    out: Path,
    scheme: Scheme,
    method: str,
    ranges_file: Path,
    exclude: Sequence[str] = (),
    feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
) -> Path:
    """Write the ``scheme`` INT8 form of ``model`` to ``out``; nodes named in ``exclude`` stay in float.

    ``ranges_file`` holds the ranges :func:`calibrate` stored; ``feeds`` are only needed when this
    onnxruntime cannot read stored ranges (then it calibrates again).
    """
    q = _ort_quant()
    qtype = {"QInt8": q.QuantType.QInt8, "QUInt8": q.QuantType.QUInt8}
    extra: dict[str, Any] = {
        "ActivationSymmetric": scheme.symmetric_activations,
        "WeightSymmetric": True,
        "QuantizeBias": scheme.quantize_bias,
        # MatMul weights are (in, out): one scale per output column
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
    }
    if not scheme.quantize_outputs:
        extra["OpTypesToExcludeOutputQuantization"] = list(scheme.op_types)
    kwargs: dict[str, Any] = dict(
        quant_format=q.QuantFormat.QDQ,
        op_types_to_quantize=list(scheme.op_types),
        per_channel=scheme.per_channel,
        reduce_range=False,
        activation_type=qtype[scheme.activation],
        weight_type=qtype[scheme.weight],
        nodes_to_exclude=list(exclude) + [n for n in coordinate_nodes(model) if n not in exclude],
        calibrate_method=_method(q, method),
        extra_options=extra,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_ort():
        if ranges_cacheable():
            q.quantize_static(str(model), str(out), calibration_data_reader=None, calibration_cache_path=str(ranges_file), **kwargs)
        else:  # pragma: no cover - older onnxruntime
            q.quantize_static(str(model), str(out), calibration_data_reader=FeedReader(feeds or []), **kwargs)
    keep_outputs_float(out)
    return out


def keep_outputs_float(path: Path) -> None:
    """Graph outputs that the quantizer routed through Q/DQ become the float tensors again.

    When a graph output also feeds a quantized layer (AdaFocusV3's ``global_feat``), or is the
    output of one (``logits`` in the CPU layout), ``quantize_static`` renames the float tensor and
    makes the *dequantized* copy the graph output, so the output carries rounding it does not need
    (and the next graph in the chain inherits it). Here the float tensor gets its name back and the
    layers inside the graph read the Q/DQ copy under a new name.
    """
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    outputs = {o.name for o in g.output}
    inputs = {i.name for i in g.input}
    producers = {o: n for n in g.node for o in n.output}
    changed = False
    for name in outputs:
        dq = producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        qn = producers.get(dq.input[0])
        if qn is None or qn.op_type != "QuantizeLinear" or qn.input[0] in outputs or qn.input[0] in inputs:
            continue
        float_name, copy_name = qn.input[0], f"{name}_dequantized"
        for n in g.node:
            n.input[:] = [copy_name if x == name else x for x in n.input]
        dq.output[0] = copy_name
        for n in g.node:
            n.input[:] = [name if x == float_name else x for x in n.input]
            n.output[:] = [name if x == float_name else x for x in n.output]
        for vi in g.value_info:
            if vi.name == float_name:
                vi.name = name
        changed = True
    if changed:
        onnx.save(model, str(path))


# Inputs that are sampling coordinates, not image data: GridSample's grid, Resize's roi / scales / sizes.
COORDINATE_INPUTS: dict[str, tuple[int, ...]] = {"GridSample": (1,), "Resize": (1, 2, 3)}


def coordinate_nodes(model: Path) -> list[str]:
    """Nodes that compute where to sample (AdaFocusV3's crop grid from the policy's action), and the
    sampling nodes themselves: these stay in float. Quantized, the grid snaps to 8-bit steps, every
    crop moves by up to a pixel, and a tiny local encoder's logits lost about 0.1 of cosine to it."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    producers = {o: n for n in graph.node for o in n.output}
    names: list[str] = []
    seen: set[int] = set()
    stack = []
    for n in graph.node:
        if n.op_type in COORDINATE_INPUTS:
            stack.append(n)
            stack.extend(producers[n.input[i]] for i in COORDINATE_INPUTS[n.op_type] if i < len(n.input) and n.input[i] in producers)
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.name:
            names.append(n.name)
        if n.op_type not in COORDINATE_INPUTS:
            stack.extend(producers[i] for i in n.input if i in producers)
    return names


def weighted_nodes(model: Path) -> list[str]:
    """Names of the weighted nodes (Conv, MatMul, Gemm, ...) of ``model``, in graph (topological) order.

    These are what sensitivity analysis groups: excluding one keeps its inputs and weights in float.
    """
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in WEIGHTED_OPS and n.name]


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """ONNX Runtime's quantizer logs a pre-processing advice on the root logger for every call."""
    root = logging.getLogger()
    flt = _DropMessages(("Please consider", "pre-processing"))
    root.addFilter(flt)
    for h in root.handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)
        for h in root.handlers:
            h.removeFilter(flt)


@dataclass
class _DropMessages(logging.Filter):
    needles: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__init__()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in self.needles)
