"""Backends, one file each, behind :class:`videploy.runtime.backends.base.Backend`; one registry.

``BACKENDS`` is the only list of backends: the CLI's ``--backend`` choices, the benchmark and
:func:`videploy.runtime.load` all ask it. Entries are lazy ``"module:Class"`` paths, so a missing
library costs nothing until its backend is asked for, and the PyTorch reference backend (which
needs torch and the model code) can be listed without the runtime importing torch.

* ``onnxruntime`` — CPU; CUDA / TensorRT execution providers with ``onnxruntime-gpu``;
* ``tensorrt`` — native engines written by ``videploy build``;
* ``openvino`` — OpenVINO on the CPU, reading the same ONNX graphs (fp32 unless asked otherwise);
* ``torch`` — the PyTorch reference (``videploy.export.torch_backend``), for parity and baselines.

Each class declares its devices, its default device and the keyword options it takes.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Union

from videploy.bundle.bundle import BundleLike
from videploy.errors import VideployError
from videploy.runtime.backends.base import Backend, Call, Counters

# name -> "module:Class"; imported only when asked for.
BACKENDS: dict[str, str] = {
    "onnxruntime": "videploy.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "videploy.runtime.backends.tensorrt:TensorRTBackend",
    "openvino": "videploy.runtime.backends.openvino:OpenVinoBackend",
    "torch": "videploy.export.torch_backend:TorchBackend",
}

BackendSpec = Union[str, Backend, Callable[..., Backend]]


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise VideployError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def open_backend(spec: BackendSpec, bundle: BundleLike, device: str | None = None, precision: str | None = None, **options: Any) -> Backend:
    """A backend on ``bundle``: ``spec`` is a registered name, a ready :class:`Backend`, or a factory
    called as ``factory(bundle, device=..., precision=..., **options)``.

    ``device`` None picks the backend's default. Options a registered backend does not take are an
    error naming the backends that do (e.g. ``threads`` for onnxruntime and torch).
    """
    if isinstance(spec, Backend):
        return spec
    if isinstance(spec, str):
        cls = backend_class(spec)
        unknown = [k for k in options if k not in cls.options]
        if unknown:
            opt = unknown[0]
            takers = [n for n in BACKENDS if opt in _declared_options(n)]
            flag = f"--{opt.replace('_', '-')}"
            if takers:
                raise VideployError(f"{flag} is for --backend {' or '.join(takers)}: the {spec} backend has no option {opt!r}")
            raise VideployError(f"the {spec} backend has no option {opt!r}, nor does any other backend")
        return cls(bundle, device=device, precision=precision, **options)
    return spec(bundle, device=device, precision=precision, **options)


def _declared_options(name: str) -> tuple[str, ...]:
    try:
        return backend_class(name).options
    except ImportError:  # a backend whose module cannot import (e.g. torch missing) takes nothing here
        return ()


__all__ = ["BACKENDS", "Backend", "BackendSpec", "Call", "Counters", "backend_class", "open_backend"]
