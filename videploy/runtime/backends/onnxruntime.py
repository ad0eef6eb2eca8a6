"""ONNX Runtime backend: CPU everywhere; CUDA and TensorRT execution providers where installed.

``device="cpu"`` uses the CPU execution provider; ``"cuda"`` the CUDA provider and ``"tensorrt"``
ONNX Runtime's TensorRT provider (with CUDA then CPU as fallbacks for nodes TensorRT does not
take). Both GPU providers come with the ``onnxruntime-gpu`` package (``pip install
'videploy[gpu]'``); asking for one that is not available is an error naming it, never a silent
fall back to CPU.

GPU providers get real options (:func:`provider_options`):

* TensorRT: an engine cache and a timing cache inside the bundle (``ort_trt_cache/``; a bundle
  that is not writable uses a per-user cache directory instead), one optimisation profile per
  graph whose batch spans the manifest's range (``trt_profile_min/opt/max_shapes``), and
  ``trt_fp16_enable`` when ``precision="fp16"``;
* CUDA: the device id and an exhaustive cuDNN convolution search (the graphs are fixed-shape but
  for the batch, so the one-time search pays for itself).

I/O binding (``io_binding``, on by default on GPU devices): inputs are bound, outputs the caller
does not fetch stay in device memory as :class:`DeviceValue` handles that the next call takes
back as inputs -- AdaFocusV3's states and features stay on the GPU between steps, only the
logits come back. Row selection (``take``) of a handle copies through the host, since ONNX
Runtime's Python API has no device-side gather; it happens only when a video leaves the batch.

``precision`` picks a graph variant the bundle lists (``GraphSpec.variants``, e.g. an fp16 graph or
a quantized INT8 graph); ``None`` runs the exported graph (``GraphSpec.file``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from videploy.bundle.bundle import Bundle, BundleLike
from videploy.bundle.manifest import GraphSpec
from videploy.cache import cache_root
from videploy.errors import VideployError
from videploy.optional import require
from videploy.runtime.backends.base import BATCH, Backend

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
TRT_CACHE_DIR = "ort_trt_cache"


@dataclass(frozen=True)
class DeviceValue:
    """An output left where the provider put it (an ``OrtValue``), with numpy-like ``shape`` / ``dtype``."""

    value: Any  # onnxruntime.OrtValue

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.value.shape())

    @property
    def dtype(self) -> np.dtype:
        return _np_dtype(self.value)

    def numpy(self) -> np.ndarray:
        return self.value.numpy()


def _np_dtype(value: Any) -> np.dtype:
    # OrtValue.element_type() is the numpy type object (e.g. numpy.float32) on current onnxruntime
    try:
        return np.dtype(value.element_type())
    except TypeError:
        return np.dtype(value.numpy().dtype)


def profile_shapes(bundle: Bundle, graph: GraphSpec) -> dict[str, str]:
    """ONNX Runtime TensorRT provider profiles for ``graph``: every input, batch at min / opt / max."""
    rng = bundle.manifest.batch
    out = {}
    for key, batch in (("trt_profile_min_shapes", rng.min), ("trt_profile_opt_shapes", rng.opt), ("trt_profile_max_shapes", rng.max)):
        parts = []
        for t in graph.inputs:
            dims = [batch if d == BATCH else d for d in t.shape]
            if not all(isinstance(d, int) for d in dims):
                raise VideployError(f"input {t.name!r} of graph '{graph.role}' has a symbolic dimension besides the batch ({t.shape}); the TensorRT provider needs fixed profiles")
            parts.append(f"{t.name}:{'x'.join(str(d) for d in dims)}")
        out[key] = ",".join(parts)
    return out


def trt_cache_dir(bundle: Bundle) -> Path:
    """Where the TensorRT provider keeps engines: inside the bundle, else (read-only bundle) a user cache."""
    inside = bundle.root / TRT_CACHE_DIR
    if os.access(bundle.root, os.W_OK):
        return inside
    key = hashlib.sha256(str(bundle.root.resolve()).encode()).hexdigest()[:16]
    return cache_root() / "ort-trt" / key


def provider_options(bundle: Bundle, graph: GraphSpec, device: str, precision: str | None, device_id: int = 0) -> list[dict[str, Any]]:
    """Options for each provider of ``_PROVIDERS[device]`` (same order) when loading ``graph``."""
    if device == "cpu":
        return [{}]
    cuda = {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE", "do_copy_in_default_stream": True}
    if device == "cuda":
        return [cuda, {}]
    cache = trt_cache_dir(bundle)
    trt = {
        "device_id": device_id,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
        "trt_fp16_enable": precision == "fp16",
        **profile_shapes(bundle, graph),
    }
    return [trt, cuda, {}]


def session_options(ort: Any, threads: int | None) -> Any:
    """The CPU session options every videploy onnxruntime session uses (benchmarks' baselines too).

    ``threads`` intra-op threads (None: onnxruntime's default, one per physical core), one inter-op
    thread. Pool threads stop busy-waiting when a run ends: by default they spin on, and in
    AdaFocusV3's chain, which switches sessions every call, the last session's spinning threads
    took the CPU from the next one -- on 2 cores the policy ran in 72 ms right after the glance vs
    41 ms after a pause, and the split chain's overhead fell from +9.9% to ~+5%
    (benchmarks/bench_chaining.py). Between runs they would also take the CPU from the decode
    workers. Our runs last milliseconds, so waking the threads costs nothing.
    """
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    devices = tuple(_PROVIDERS)
    default_device = "cpu"
    options = ("threads", "io_binding", "device_id")

    def __init__(
        self,
        bundle: BundleLike,
        device: str | None = None,
        precision: str | None = None,
        threads: int | None = None,
        io_binding: bool | None = None,
        device_id: int = 0,
    ):
        if threads is not None and int(threads) < 1:
            raise VideployError(f"threads must be >= 1, got {threads}")
        self._threads = None if threads is None else int(threads)
        self._io_binding = io_binding
        self.device_id = int(device_id)
        self._sessions: dict[str, Any] = {}
        super().__init__(bundle, device=device, precision=precision)
        # AdaFocusV3's chain hands features and states from graph to graph: bound, they stay in
        # onnxruntime's arena (device memory on a GPU) instead of being copied out after every call.
        # On the CPU the two measured within a few percent of each other either way
        # (benchmarks/bench_chaining.py times both), so the chain binds everywhere.
        chained = self.bundle.early_exit is not None
        self.io_binding = (self.device != "cpu" or chained) if io_binding is None else bool(io_binding)
        self._ort_device = "cpu" if self.device == "cpu" else "cuda"

    @property
    def threads(self) -> int | None:
        """Intra-op threads as set; None means onnxruntime's default (one per physical core)."""
        return self._threads

    @property
    def host_memory(self) -> bool:  # type: ignore[override]
        return not self.io_binding

    def _activate(self) -> None:
        self.ort = require("onnxruntime", "the onnxruntime backend")
        available = self.ort.get_available_providers()
        wanted = _PROVIDERS[self.device][0]
        if wanted not in available:
            raise VideployError(
                f"onnxruntime here has no {wanted} (available: {available}), so --device {self.device} cannot run; "
                "install the GPU build (pip install 'videploy[gpu]', which brings onnxruntime-gpu) on a machine with an NVIDIA GPU, or use --device cpu"
            )
        self.providers = [p for p in _PROVIDERS[self.device] if p in available]

    def _load(self, graph: GraphSpec) -> None:
        path = self.bundle.graph_file(graph.role, self.precision)
        opts = session_options(self.ort, self._threads)
        options = provider_options(self.bundle, graph, self.device, self.precision, self.device_id)
        if self.device == "tensorrt":
            Path(options[0]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        chosen = [(p, o) for p, o in zip(_PROVIDERS[self.device], options) if p in self.providers]
        try:
            session = self.ort.InferenceSession(str(path), sess_options=opts, providers=[p for p, _ in chosen], provider_options=[o for _, o in chosen])
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
        session = self._sessions[graph.role]
        if not self.io_binding:
            feed = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
            return dict(zip(names, session.run(names, feed)))
        binding = session.io_binding()
        for name, value in inputs.items():
            if isinstance(value, DeviceValue):
                binding.bind_ortvalue_input(name, value.value)
            else:
                binding.bind_ortvalue_input(name, self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), self._ort_device, self.device_id))
        for name in names:
            binding.bind_output(name, "cpu" if name in fetch else self._ort_device, self.device_id if name not in fetch else 0)
        session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {name: (v.numpy() if name in fetch else DeviceValue(v)) for name, v in zip(names, values)}

    # --- handles: device-resident outputs go through the host for row selection -------------------
    def take(self, x: Any, rows: Sequence[int] | np.ndarray) -> Any:
        return super().take(self.to_host(x), rows)

    def concat(self, xs: Sequence[Any]) -> Any:
        return super().concat([self.to_host(x) for x in xs])

    def to_host(self, x: Any) -> np.ndarray:
        return x.numpy() if isinstance(x, DeviceValue) else np.asarray(x)

    def close(self) -> None:
        self._sessions.clear()
