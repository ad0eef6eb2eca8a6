"""OpenVINO backend: the bundle's ONNX graphs compiled by OpenVINO for the CPU.

OpenVINO reads ONNX directly, so it runs the very files onnxruntime runs. Its CPU plugin's
default inference precision is bf16 on CPUs with bf16 instructions (it was on this project's
machines): a silent precision change. This backend forces fp32 (``INFERENCE_PRECISION_HINT=f32``)
unless the caller asks for reduced precision with ``precision="bf16"`` or ``"fp16"`` -- opt-in,
and to be verified like any fp16 graph (``videploy bench`` shows it next to fp32). A graph
variant the bundle lists (e.g. ``precision="int8"`` for a quantized graph) is read instead of the
exported graph and run at fp32 elsewhere.

Options: ``threads`` (``INFERENCE_NUM_THREADS``; None leaves OpenVINO's choice) and
``performance_hint`` (``"LATENCY"`` by default: one request at a time, as the runtime calls).
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

import numpy as np

from videploy.bundle.bundle import BundleLike
from videploy.bundle.manifest import GraphSpec
from videploy.errors import VideployError
from videploy.optional import require
from videploy.runtime.backends.base import Backend

# precision asked for -> OpenVINO's inference precision hint
INFERENCE_PRECISION = {None: "f32", "fp32": "f32", "bf16": "bf16", "fp16": "f16"}


class OpenVinoBackend(Backend):
    name = "openvino"
    devices = ("cpu",)
    default_device = "cpu"
    options = ("threads", "performance_hint")

    def __init__(
        self,
        bundle: BundleLike,
        device: str | None = None,
        precision: str | None = None,
        threads: int | None = None,
        performance_hint: str = "LATENCY",
    ):
        if threads is not None and int(threads) < 1:
            raise VideployError(f"threads must be >= 1, got {threads}")
        self._threads = None if threads is None else int(threads)
        self.performance_hint = performance_hint
        self._compiled: dict[str, Any] = {}
        self._requests: dict[str, Any] = {}
        super().__init__(bundle, device=device, precision=precision)

    @property
    def threads(self) -> int | None:
        return self._threads

    def _activate(self) -> None:
        self.ov = require("openvino", "the OpenVINO backend")
        self.core = self.ov.Core()
        if "CPU" not in self.core.available_devices:
            raise VideployError(f"OpenVINO sees no CPU device (it has {self.core.available_devices}); reinstall it: pip install 'videploy[openvino]'")

    def _config(self) -> dict[str, Any]:
        hint = INFERENCE_PRECISION.get(self.precision, "f32")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": self.performance_hint}
        if self._threads is not None:
            config["INFERENCE_NUM_THREADS"] = self._threads
        return config

    def _load(self, graph: GraphSpec) -> None:
        variant = self.precision if self.precision not in INFERENCE_PRECISION else None
        path = self.bundle.graph_file(graph.role, variant)
        try:
            model = self.core.read_model(str(path))
            _refuse_miscounted_sum(model, graph.role, path)
            compiled = self.core.compile_model(model, "CPU", self._config())
        except Exception as exc:  # OpenVINO raises its own RuntimeError subclasses for bad graphs
            raise VideployError(f"OpenVINO cannot compile graph '{graph.role}' from {str(path)!r}: {' '.join(str(exc).split())[:400]}") from exc
        names = sorted(n for i in compiled.inputs for n in i.get_names())
        expected = [t.name for t in graph.inputs]
        if not set(expected) <= set(names):
            raise VideployError(f"graph file {str(path)!r} takes inputs {names}, but the manifest lists {expected}; the bundle is inconsistent, re-export it")
        self._compiled[graph.role] = compiled
        self._requests[graph.role] = compiled.create_infer_request()

    def _run_impl(self, graph: GraphSpec, inputs: Mapping[str, Any], fetch: Collection[str]) -> dict[str, Any]:
        request = self._requests[graph.role]
        compiled = self._compiled[graph.role]
        request.infer({k: np.ascontiguousarray(v) for k, v in inputs.items()})
        out = {}
        for spec in graph.outputs:
            # copy: the request reuses its output buffers on the next call
            out[spec.name] = np.array(request.get_tensor(compiled.output(spec.name)).data, copy=True)
        return out

    def close(self) -> None:
        self._requests.clear()
        self._compiled.clear()


def _refuse_miscounted_sum(model: Any, role: str, path: Any) -> None:
    """Refuse the graph pattern OpenVINO's CPU plugin computes wrongly: a ReduceSum of a comparison
    cast to int64 is right for the first row of a batch only (measured on 2026.4: AdaFocusV3's focus
    indices came out as -1 from the second video on). Bundles exported since the fix count in float."""
    import openvino as ov

    for op in model.get_ordered_ops():
        if op.get_type_name() != "ReduceSum":
            continue
        src = op.input_value(0).get_node()
        if src.get_type_name() == "Convert" and src.get_output_element_type(0) == ov.Type.i64 and src.input_value(0).get_node().get_type_name() == "Equal":
            raise VideployError(
                f"graph '{role}' ({str(path)!r}) sums an int64 cast of a comparison ({op.get_friendly_name()}), which OpenVINO's CPU "
                "plugin computes wrongly for every video after the first in a batch (AdaFocusV3 bundles exported by earlier videploy "
                "versions choose wrong focus frames there); re-export the bundle with this videploy, or use --backend onnxruntime"
            )
