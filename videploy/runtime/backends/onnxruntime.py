"""ONNX Runtime backend: CPU everywhere; CUDA and TensorRT execution providers where installed.

``device="cpu"`` uses the CPU execution provider; ``"cuda"`` the CUDA provider and ``"tensorrt"``
ONNX Runtime's TensorRT provider (with CUDA then CPU as fallbacks for nodes TensorRT does not
take). Both GPU providers come with the ``onnxruntime-gpu`` package; asking for one that is not
available is an error naming the package, never a silent fall back to CPU.

``precision`` picks a graph variant the bundle lists (``GraphSpec.variants``, e.g. an INT8 Q/DQ
graph from calibration); ``None`` runs the exported graph (``GraphSpec.file``).
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

import numpy as np

from videploy.bundle.bundle import BundleLike
from videploy.bundle.manifest import GraphSpec
from videploy.errors import VideployError
from videploy.optional import INSTALL_HINTS, require
from videploy.runtime.backends.base import Backend

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    devices = tuple(_PROVIDERS)
    default_device = "cpu"
    options = ("threads",)

    def __init__(self, bundle: BundleLike, device: str | None = None, precision: str | None = None, threads: int | None = None):
        if threads is not None and int(threads) < 1:
            raise VideployError(f"threads must be >= 1, got {threads}")
        self._threads = None if threads is None else int(threads)
        self._sessions: dict[str, Any] = {}
        super().__init__(bundle, device=device, precision=precision)

    @property
    def threads(self) -> int | None:
        """Intra-op threads as set; None means onnxruntime's default (one per physical core)."""
        return self._threads

    def _activate(self) -> None:
        self.ort = require("onnxruntime", "the onnxruntime backend")
        available = self.ort.get_available_providers()
        wanted = _PROVIDERS[self.device][0]
        if wanted not in available:
            raise VideployError(
                f"onnxruntime here has no {wanted} (available: {available}), so --device {self.device} cannot run; "
                f"install the GPU build ({INSTALL_HINTS['onnxruntime']}) on a machine with an NVIDIA GPU, or use --device cpu"
            )
        self.providers = [p for p in _PROVIDERS[self.device] if p in available]

    def _load(self, graph: GraphSpec) -> None:
        path = self.bundle.graph_file(graph.role, self.precision)
        opts = self.ort.SessionOptions()
        if self._threads is not None:
            opts.intra_op_num_threads = self._threads
            opts.inter_op_num_threads = 1
        try:
            session = self.ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own (non-public) exception types for bad files
            raise VideployError(f"onnxruntime cannot load graph '{graph.role}' from {str(path)!r}: {exc}; the bundle is damaged, re-export it") from exc
        names = [i.name for i in session.get_inputs()]
        expected = [t.name for t in graph.inputs]
        if sorted(names) != sorted(expected):
            raise VideployError(f"graph file {str(path)!r} takes inputs {names}, but the manifest lists {expected}; the bundle is inconsistent, re-export it")
        outs = {o.name for o in session.get_outputs()}
        missing = [t.name for t in graph.outputs if t.name not in outs]
        if missing:
            raise VideployError(f"graph file {str(path)!r} lacks outputs {missing} that the manifest lists; re-export the bundle")
        self._sessions[graph.role] = session

    def _run_impl(self, graph: GraphSpec, inputs: Mapping[str, Any], fetch: Collection[str]) -> dict[str, Any]:
        names = [t.name for t in graph.outputs]
        feed = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
        values = self._sessions[graph.role].run(names, feed)
        return dict(zip(names, values))

    def close(self) -> None:
        self._sessions.clear()
