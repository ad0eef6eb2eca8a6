"""A stand-in for ``tensorrt`` and CUDA's runtime API, so the TensorRT backend's logic runs here.

TensorRT cannot be installed on this machine. These fakes implement exactly the API surface the
backend uses (TensorRT 10 named I/O tensors; ``cuda.bindings.runtime`` tuples-with-error-codes) on
host memory: "device" allocations are numpy buffers addressed by their real pointers, copies are
``ctypes.memmove`` with bounds checks against those allocations, and an "engine" is an ONNX graph
executed with onnxruntime. Every copy is logged with its direction and size, so tests can check
what crosses to the host between AdaFocusV3 steps.
"""

from __future__ import annotations

import ctypes
import enum
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort


# --- cuda.bindings.runtime ------------------------------------------------------------------------
class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


@dataclass
class FakeCuda:
    device_count: int = 1
    allocations: dict[int, np.ndarray] = field(default_factory=dict)
    freed: list[int] = field(default_factory=list)
    copies: list[tuple[str, int, int, int]] = field(default_factory=list)  # (kind name, bytes, dst, src)
    mallocs: int = 0

    def _device(self, ptr: int, n: int) -> bool:
        for base, buf in self.allocations.items():
            if base <= ptr and ptr + n <= base + buf.nbytes:
                return True
        return False

    def module(self) -> types.ModuleType:
        m = types.ModuleType("cuda.bindings.runtime")
        m.cudaError_t = cudaError_t
        m.cudaMemcpyKind = cudaMemcpyKind
        fake = self

        def cudaGetDeviceCount():
            return (cudaError_t.cudaSuccess, fake.device_count)

        def cudaMalloc(n):
            buf = np.zeros(int(n), dtype=np.uint8)
            ptr = buf.ctypes.data
            fake.allocations[ptr] = buf
            fake.mallocs += 1
            return (cudaError_t.cudaSuccess, ptr)

        def cudaFree(ptr):
            if ptr not in fake.allocations:
                return (cudaError_t.cudaErrorInvalidValue,)
            del fake.allocations[ptr]
            fake.freed.append(ptr)
            return (cudaError_t.cudaSuccess,)

        def cudaMemcpyAsync(dst, src, n, kind, stream):
            src_dev = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
            dst_dev = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
            if (src_dev and not fake._device(src, n)) or (dst_dev and not fake._device(dst, n)):
                return (cudaError_t.cudaErrorInvalidValue,)
            ctypes.memmove(dst, src, n)
            fake.copies.append((kind.name, int(n), int(dst), int(src)))
            return (cudaError_t.cudaSuccess,)

        m.cudaGetDeviceCount = cudaGetDeviceCount
        m.cudaMalloc = cudaMalloc
        m.cudaFree = cudaFree
        m.cudaMemcpyAsync = cudaMemcpyAsync
        m.cudaStreamCreate = lambda: (cudaError_t.cudaSuccess, 7)
        m.cudaStreamSynchronize = lambda s: (cudaError_t.cudaSuccess,)
        m.cudaStreamDestroy = lambda s: (cudaError_t.cudaSuccess,)
        return m

    def d2h(self) -> list[tuple[int, int]]:
        """(bytes, device source address) of every device-to-host copy."""
        return [(n, src) for k, n, _, src in self.copies if k == "cudaMemcpyDeviceToHost"]


# --- tensorrt --------------------------------------------------------------------------------------
class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16
    INT64 = np.int64
    INT32 = np.int32
    BOOL = np.bool_
    UINT8 = np.uint8


_ORT_TYPES = {"tensor(float)": DataType.FLOAT, "tensor(float16)": DataType.HALF, "tensor(int64)": DataType.INT64, "tensor(int32)": DataType.INT32}


class _Engine:
    def __init__(self, onnx_bytes: bytes, profile_max: int, cuda: FakeCuda):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = {o.name: o for o in self.session.get_outputs()}
        self.names = list(self.inputs) + list(self.outputs)
        self.profile_max = profile_max
        self.cuda = cuda

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        t = self.inputs.get(name) or self.outputs[name]
        return _ORT_TYPES[t.type]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        t = self.inputs.get(name) or self.outputs[name]
        return tuple(d if isinstance(d, int) else -1 for d in t.shape)

    def get_tensor_profile_shape(self, name: str, profile: int):
        row = self.get_tensor_shape(name)[1:]
        return ((1, *row), (max(1, self.profile_max // 2), *row), (self.profile_max, *row))

    def create_execution_context(self) -> "_Context":
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine):
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.executions = 0

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(int(s) for s in shape)
        if name not in self.engine.inputs or not 1 <= shape[0] <= self.engine.profile_max:
            return False
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream) -> bool:
        e = self.engine
        feed = {}
        for name, info in e.inputs.items():
            shape = self.shapes[name]
            dt = np.dtype(_ORT_TYPES[info.type].value)
            n = int(np.prod(shape)) * dt.itemsize
            assert e.cuda._device(self.addresses[name], n), f"input {name} is not in device memory"
            raw = (ctypes.c_char * n).from_address(self.addresses[name])
            feed[name] = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
        outs = e.session.run(list(e.outputs), feed)
        for name, value in zip(e.outputs, outs):
            value = np.ascontiguousarray(value)
            assert e.cuda._device(self.addresses[name], value.nbytes), f"output {name} does not fit its device buffer"
            ctypes.memmove(self.addresses[name], value.ctypes.data, value.nbytes)
        self.executions += 1
        return True


def install(monkeypatch, version: str = "10.8.0", profile_max: int = 8, device_count: int = 1) -> FakeCuda:
    """Put fake ``tensorrt`` and ``cuda.bindings.runtime`` modules into ``sys.modules``."""
    cuda = FakeCuda(device_count=device_count)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.TensorIOMode = TensorIOMode
    trt.DataType = DataType

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            try:
                return _Engine(data, profile_max, cuda)
            except Exception:  # a real runtime returns None for an engine it cannot read
                return None

    trt.Logger = Logger
    trt.Runtime = Runtime
    trt.nptype = lambda dt: dt.value
    pkg = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    rt = cuda.module()
    pkg.bindings = bindings
    bindings.runtime = rt
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda", pkg)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    return cuda


def add_engines(bundle, precision: str = "fp32"):
    """Give every graph of a bundle an "engine" (its ONNX bytes, which the fake runtime executes)."""
    import dataclasses
    import shutil

    from videploy.bundle.manifest import read_manifest, write_manifest

    m = read_manifest(bundle)
    graphs = []
    for g in m.graphs:
        rel = f"{g.role}.{precision}.engine"
        shutil.copyfile(bundle / g.file, bundle / rel)
        graphs.append(dataclasses.replace(g, engines={**g.engines, precision: rel}))
    write_manifest(bundle, m.with_updates(graphs=tuple(graphs)))
    return bundle
