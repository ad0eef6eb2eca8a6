"""Backends, one file each, behind :class:`videploy.runtime.backends.base.Backend`.

``onnxruntime`` (CPU; CUDA / TensorRT execution providers where installed) and ``tensorrt``
(native engines built by ``videploy build``). The PyTorch reference backend lives in
``videploy.export.torch_backend`` (it needs torch and the model code, which the runtime must not
import); pass its class to :func:`videploy.runtime.load` directly.
"""

from __future__ import annotations

import importlib

from videploy.errors import VideployError
from videploy.runtime.backends.base import Backend, Counters

# name -> "module:Class"; imported only when asked for, so a missing library costs nothing.
BACKENDS: dict[str, str] = {
    "onnxruntime": "videploy.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "videploy.runtime.backends.tensorrt:TensorRTBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise VideployError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["BACKENDS", "Backend", "Counters", "backend_class"]
