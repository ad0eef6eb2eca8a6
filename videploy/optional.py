"""Lazy imports of optional dependencies, with an error that says how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType

from videploy.errors import VideployError

# How to get each optional dependency; the one place these hints live.
INSTALL_HINTS: dict[str, str] = {
    "torch": "pip install 'videploy[torch]' (CPU machines: pip install torch==2.13.0 first, or the CUDA build from pytorch.org)",
    "onnxscript": "pip install 'videploy[torch]'",
    "onnxslim": "pip install 'videploy[torch]'",
    "onnxruntime": "pip install 'videploy[cpu]' (CPU), or 'videploy[gpu]' for onnxruntime-gpu's CUDA / TensorRT execution providers; one of the two, never both (they install the same module)",
    # the GPU build specifically (a CPU onnxruntime is installed but lacks the CUDA providers)
    "onnxruntime-gpu": "pip uninstall -y onnxruntime && pip install 'videploy[gpu]' (onnxruntime and onnxruntime-gpu install the same module)",
    "tensorrt": (
        "pip install 'videploy[tensorrt]' on CUDA 13 (TensorRT 11.x / 10.13+), or 'videploy[tensorrt-cu12]' on CUDA 12 (TensorRT 10.x); "
        "on Jetson TensorRT 10 comes with JetPack"
    ),
    "cuda": "pip install 'videploy[tensorrt]' (CUDA 13: cuda-python>=13) or 'videploy[tensorrt-cu12]' (CUDA 12: cuda-python<13)",
    "openvino": "pip install 'videploy[openvino]'",
    "safetensors": "pip install 'videploy[torch]' (or pip install safetensors)",
    "yaml": "pip install pyyaml",
    "matplotlib": "pip install 'videploy[plot]'",
    "pytriton": "pip install 'videploy[serve]' (PyTriton ships Triton Inference Server; Linux x86-64 or arm64)",
    "tritonclient": "pip install 'videploy[serve]' (or pip install 'tritonclient[http,grpc]')",
    "ray": "pip install 'videploy[ray]' (Ray Data, pyarrow, pandas)",
    "pyarrow": "pip install 'videploy[ray]' (Ray Data, pyarrow, pandas)",
    "pandas": "pip install 'videploy[ray]' (Ray Data, pyarrow, pandas)",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a :class:`VideployError` naming ``purpose`` and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = INSTALL_HINTS.get(top, f"pip install {top}")
        raise VideployError(f"{purpose} needs the Python package '{top}', which is not installed ({exc}). Install it with: {hint}") from exc
