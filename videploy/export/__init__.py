"""PyTorch -> ONNX bundles (verified against PyTorch) and TensorRT engines.

* :func:`export_bundle` (``videploy.export.api``): model -> verified bundle directory.
* :func:`build_engines` / :func:`plan_build` (``videploy.export.tensorrt_build``): TensorRT engines.
* :func:`convert_to_fp16` (``videploy.export.fp16``): fp16 graphs for strongly typed TensorRT.

Importing this package imports nothing heavy: torch is needed only to export, and a TensorRT
device that only builds engines has no torch. The names above are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_bundle": "videploy.export.api",
    "ExportResult": "videploy.export.api",
    "build_engines": "videploy.export.tensorrt_build",
    "plan_build": "videploy.export.tensorrt_build",
    "BuildPlan": "videploy.export.tensorrt_build",
    "convert_to_fp16": "videploy.export.fp16",
    "Tolerance": "videploy.export.verify",
    "VerificationReport": "videploy.export.verify",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'videploy.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
