"""Native TensorRT backend: the engines ``videploy build`` wrote into the bundle.

Written against the TensorRT 10 / 11 Python API with named I/O tensors: ``engine.num_io_tensors``,
``get_tensor_name`` / ``get_tensor_mode`` / ``get_tensor_dtype``, ``context.set_input_shape``,
``context.set_tensor_address`` and ``context.execute_async_v3(stream)``. Device memory and copies
go through CUDA's runtime API from the ``cuda-python`` package (``cuda.bindings.runtime``, or the
older ``cuda.cudart``). Both imports are lazy: the rest of the runtime works without them.

Memory plan
    * every I/O tensor of every engine gets one device buffer sized for the bundle's maximum
      batch, allocated when the backend is created and reused by every call; its address is bound
      to the execution context once;
    * one CUDA stream for everything; a call synchronises only when it must hand data to the host;
    * outputs not in ``fetch`` stay on the device as :class:`DeviceArray` handles. Feeding a handle
      back (``global_state`` -> local step, ``next_local_state`` -> next step) is a device-to-device
      copy into the consuming engine's input buffer. :meth:`take` / :meth:`concat` (batch compaction
      and continuous batching for AdaFocusV3) copy rows between device buffers from a small pool
      keyed by row size, allocated on first use and reused. So between AdaFocusV3 steps only the
      entropies (the exit decisions) travel to the host, plus the logits of the rows that exit.

A handle refers to an engine's output buffer, which the engine's next call overwrites; using a
handle after that raises an error instead of reading changed data.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

import numpy as np
from packaging.version import Version

from videploy.bundle.bundle import BundleLike
from videploy.bundle.manifest import GraphSpec
from videploy.errors import VideployError
from videploy.optional import INSTALL_HINTS, require
from videploy.runtime.backends.base import BATCH, Backend

MIN_TENSORRT = Version("10.0")


@dataclass
class _Buffer:
    """One device allocation. ``generation`` counts overwrites, to detect stale handles."""

    ptr: int
    nbytes: int
    generation: int = 0
    holder: Any = None  # weakref to the DeviceArray occupying a pool buffer


@dataclass(eq=False)
class DeviceArray:
    """A batch that lives in device memory (an output of, or a row selection made by, this backend)."""

    buffer: _Buffer
    shape: tuple[int, ...]
    dtype: np.dtype
    generation: int = field(default=0)

    @property
    def ptr(self) -> int:
        return self.buffer.ptr

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def row_nbytes(self) -> int:
        return int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def valid(self) -> bool:
        return self.buffer.generation == self.generation


class _Cuda:
    """The few CUDA runtime calls the backend needs, with errors turned into VideployError."""

    def __init__(self) -> None:
        try:
            self.rt = require("cuda.bindings.runtime", "the TensorRT backend (device memory)")
        except VideployError:
            self.rt = require("cuda.cudart", "the TensorRT backend (device memory)")
        self.H2D = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.D2H = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.D2D = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice

    def _ok(self, result: Any, what: str) -> Any:
        err = result[0] if isinstance(result, tuple) else result
        if err != self.rt.cudaError_t.cudaSuccess:
            raise VideployError(f"CUDA {what} failed ({err}); check the GPU (nvidia-smi) and the CUDA driver")
        if isinstance(result, tuple) and len(result) > 1:
            return result[1] if len(result) == 2 else result[1:]
        return None

    def device_count(self) -> int:
        result = self.rt.cudaGetDeviceCount()
        if result[0] != self.rt.cudaError_t.cudaSuccess:
            return 0
        return int(result[1])

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self._ok(self.rt.cudaFree(ptr), "cudaFree")

    def stream(self) -> Any:
        return self._ok(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def copy(self, dst: int, src: int, nbytes: int, kind: Any, stream: Any) -> None:
        if nbytes:
            self._ok(self.rt.cudaMemcpyAsync(dst, src, int(nbytes), kind, stream), "cudaMemcpyAsync")

    def sync(self, stream: Any) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def destroy(self, stream: Any) -> None:
        self._ok(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")


@dataclass
class _Engine:
    graph: GraphSpec
    engine: Any
    context: Any
    buffers: dict[str, _Buffer]
    row_shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]


class TensorRTBackend(Backend):
    name = "tensorrt"
    devices = ("cuda",)
    default_device = "cuda"
    host_memory = False
    dynamic_batch = False  # engines are built for the bundle's batch profile

    def __init__(self, bundle: BundleLike, device: str | None = None, precision: str | None = None):
        self._engines: dict[str, _Engine] = {}
        self._pool: dict[int, list[_Buffer]] = {}
        self._allocations: list[int] = []
        super().__init__(bundle, device=device, precision=precision)

    @classmethod
    def device_for(cls, requested: str | None) -> str:
        return "cuda"  # engines run on the GPU whatever the caller's device

    # --- activation -------------------------------------------------------------------------------
    def _activate(self) -> None:
        self.trt = require("tensorrt", "the TensorRT backend")
        version = Version(getattr(self.trt, "__version__", "0"))
        if version < MIN_TENSORRT:
            raise VideployError(
                f"the TensorRT backend needs TensorRT >= {MIN_TENSORRT} (named I/O tensors, execute_async_v3); found {version}. "
                f"Upgrade: {INSTALL_HINTS['tensorrt']}"
            )
        self.cuda = _Cuda()
        if self.cuda.device_count() < 1:
            raise VideployError("the TensorRT backend needs an NVIDIA GPU, and CUDA sees none; run on a GPU machine or use --backend onnxruntime --device cpu")
        self.precision = self.precision or self._default_precision()
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        self.stream = self.cuda.stream()

    def _default_precision(self) -> str:
        have = [set(g.engines) for g in self.manifest.graphs]
        common = set.intersection(*have) if have else set()
        for p in (self.manifest.precision, "fp16", "fp32", "int8"):
            if p in common:
                return p
        raise VideployError(
            f"bundle {str(self.bundle_dir)!r} has no TensorRT engines for all its graphs; build them first: videploy build {self.bundle_dir} --precision fp16"
        )

    # --- loading ----------------------------------------------------------------------------------
    def _load(self, graph: GraphSpec) -> None:
        trt = self.trt
        rel = graph.engines.get(self.precision)
        if rel is None:
            raise VideployError(
                f"bundle has no {self.precision} TensorRT engine for graph '{graph.role}' (it has {sorted(graph.engines) or 'none'}); "
                f"run: videploy build {self.bundle_dir} --precision {self.precision}"
            )
        path = self.bundle.path(rel)
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise VideployError(
                f"TensorRT cannot load engine {str(path)!r}: engines are tied to the TensorRT version and GPU they were built with; rebuild it here with videploy build"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        want_in = [t.name for t in graph.inputs]
        want_out = [t.name for t in graph.outputs]
        if sorted(inputs) != sorted(want_in) or not set(want_out) <= set(outputs):
            raise VideployError(f"engine {str(path)!r} has inputs {inputs} / outputs {outputs}, the manifest lists {want_in} / {want_out}; rebuild it")
        context = engine.create_execution_context()
        max_batch = self.manifest.batch.max
        buffers: dict[str, _Buffer] = {}
        row_shapes: dict[str, tuple[int, ...]] = {}
        dtypes: dict[str, np.dtype] = {}
        for spec in (*graph.inputs, *graph.outputs):
            if spec.shape[0] != BATCH or any(not isinstance(d, int) for d in spec.shape[1:]):
                raise VideployError(f"the TensorRT backend needs tensors shaped (batch, fixed...), but {spec.name!r} of graph '{graph.role}' is {spec.shape}")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(spec.name)))
            if dtype != np.dtype(spec.dtype):
                raise VideployError(f"engine tensor {spec.name!r} of graph '{graph.role}' is {dtype}, the manifest says {spec.dtype}; rebuild the engine")
            if spec.name in want_in:
                profile_max = int(engine.get_tensor_profile_shape(spec.name, 0)[2][0])
                if profile_max < max_batch:
                    raise VideployError(f"engine of graph '{graph.role}' was built for batches up to {profile_max}, the bundle says {max_batch}; rebuild it")
            row = tuple(int(d) for d in spec.shape[1:])
            buf = self._alloc(max_batch * int(np.prod(row, dtype=np.int64)) * dtype.itemsize)
            if not context.set_tensor_address(spec.name, buf.ptr):
                raise VideployError(f"TensorRT refused the address of tensor {spec.name!r} of graph '{graph.role}'")
            buffers[spec.name], row_shapes[spec.name], dtypes[spec.name] = buf, row, dtype
        self._engines[graph.role] = _Engine(graph, engine, context, buffers, row_shapes, dtypes)

    def _alloc(self, nbytes: int) -> _Buffer:
        ptr = self.cuda.malloc(nbytes)
        self._allocations.append(ptr)
        return _Buffer(ptr=ptr, nbytes=int(nbytes))

    # --- running ----------------------------------------------------------------------------------
    def _run_impl(self, graph: GraphSpec, inputs: Mapping[str, Any], fetch: Collection[str]) -> dict[str, Any]:
        e = self._engines[graph.role]
        batch = None
        for spec in graph.inputs:
            x = inputs[spec.name]
            batch = int(x.shape[0])
            dst = e.buffers[spec.name]
            self._write(dst, 0, x)
            if not e.context.set_input_shape(spec.name, (batch, *e.row_shapes[spec.name])):
                raise VideployError(f"TensorRT rejected shape {(batch, *e.row_shapes[spec.name])} for input {spec.name!r} of graph '{graph.role}'")
        if not e.context.execute_async_v3(self.stream):
            raise VideployError(f"TensorRT failed to run graph '{graph.role}' (see the TensorRT log above)")
        out: dict[str, Any] = {}
        host: list[tuple[str, np.ndarray]] = []
        for spec in graph.outputs:
            buf = e.buffers[spec.name]
            buf.generation += 1  # earlier handles to this buffer are now stale
            shape = (batch, *e.row_shapes[spec.name])
            if spec.name in fetch:
                arr = np.empty(shape, dtype=e.dtypes[spec.name])
                self.cuda.copy(arr.ctypes.data, buf.ptr, arr.nbytes, self.cuda.D2H, self.stream)
                host.append((spec.name, arr))
            else:
                out[spec.name] = DeviceArray(buf, shape, e.dtypes[spec.name], buf.generation)
        if host:
            self.cuda.sync(self.stream)
            out.update(host)
        return out

    def _write(self, dst: _Buffer, offset: int, x: Any) -> None:
        """Copy a host array or a device handle into ``dst`` at byte ``offset`` (async on the stream)."""
        if isinstance(x, DeviceArray):
            self._check_live(x)
            if x.ptr == dst.ptr and offset == 0:
                return
            n = x.nbytes
            self._check_fits(dst, offset, n)
            self.cuda.copy(dst.ptr + offset, x.ptr, n, self.cuda.D2D, self.stream)
            return
        arr = np.ascontiguousarray(x)
        self._check_fits(dst, offset, arr.nbytes)
        self.cuda.copy(dst.ptr + offset, arr.ctypes.data, arr.nbytes, self.cuda.H2D, self.stream)
        # the host array must outlive the async copy
        self.cuda.sync(self.stream)

    def _check_live(self, x: DeviceArray) -> None:
        if not x.valid():
            raise VideployError("a TensorRT device tensor was used after the engine that produced it ran again; take() or fetch it before the next call")

    def _check_fits(self, dst: _Buffer, offset: int, n: int) -> None:
        if offset + n > dst.nbytes:
            raise VideployError(f"{offset + n} bytes do not fit the {dst.nbytes}-byte device buffer sized for the bundle's maximum batch; use a smaller batch")

    # --- memory helpers ---------------------------------------------------------------------------
    def _scratch(self, row_nbytes: int) -> _Buffer:
        """A free pool buffer for up to max-batch rows of ``row_nbytes`` (reused once its handle is gone)."""
        pool = self._pool.setdefault(row_nbytes, [])
        for buf in pool:
            if buf.holder is None or buf.holder() is None:
                return buf
        buf = self._alloc(self.manifest.batch.max * row_nbytes)
        pool.append(buf)
        return buf

    def _claim(self, buf: _Buffer, shape: tuple[int, ...], dtype: np.dtype) -> DeviceArray:
        buf.generation += 1
        arr = DeviceArray(buf, shape, dtype, buf.generation)
        buf.holder = weakref.ref(arr)
        return arr

    def take(self, x: Any, rows: Sequence[int] | np.ndarray) -> Any:
        if not isinstance(x, DeviceArray):
            return super().take(x, rows)
        self._check_live(x)
        rows = np.asarray(rows, dtype=np.int64)
        rb = x.row_nbytes
        dst = self._scratch(rb)
        # one copy per run of consecutive rows
        start = 0
        while start < rows.size:
            end = start + 1
            while end < rows.size and rows[end] == rows[end - 1] + 1:
                end += 1
            self.cuda.copy(dst.ptr + start * rb, x.ptr + int(rows[start]) * rb, (end - start) * rb, self.cuda.D2D, self.stream)
            start = end
        return self._claim(dst, (int(rows.size), *x.shape[1:]), x.dtype)

    def concat(self, xs: Sequence[Any]) -> Any:
        if all(not isinstance(x, DeviceArray) for x in xs):
            return super().concat(xs)
        first = next(x for x in xs if isinstance(x, DeviceArray))
        rb = first.row_nbytes
        total = sum(int(x.shape[0]) for x in xs)
        dst = self._scratch(rb)
        offset = 0
        for x in xs:
            if tuple(x.shape[1:]) != tuple(first.shape[1:]):
                raise VideployError(f"cannot concatenate batches of rows {tuple(x.shape[1:])} and {tuple(first.shape[1:])}")
            self._write(dst, offset, x if isinstance(x, DeviceArray) else np.asarray(x, dtype=first.dtype))
            offset += int(x.shape[0]) * rb
        return self._claim(dst, (total, *first.shape[1:]), first.dtype)

    def to_host(self, x: Any) -> np.ndarray:
        if not isinstance(x, DeviceArray):
            return np.asarray(x)
        self._check_live(x)
        arr = np.empty(x.shape, dtype=x.dtype)
        self.cuda.copy(arr.ctypes.data, x.ptr, arr.nbytes, self.cuda.D2H, self.stream)
        self.cuda.sync(self.stream)
        return arr

    def close(self) -> None:
        cuda = getattr(self, "cuda", None)
        if cuda is None:
            return
        cuda.sync(self.stream)
        for ptr in self._allocations:
            cuda.free(ptr)
        self._allocations.clear()
        self._engines.clear()
        self._pool.clear()
        cuda.destroy(self.stream)
        self.cuda = None

    def __del__(self) -> None:  # pragma: no cover - best effort when close() was not called
        try:
            self.close()
        except (VideployError, AttributeError, TypeError):
            pass
