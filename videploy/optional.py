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
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu for the CUDA / TensorRT execution providers)",
    "tensorrt": "install TensorRT 10 or 11 for your CUDA version (pip install tensorrt, or JetPack on Jetson)",
    "cuda": "pip install cuda-python (TensorRT's Python samples use it for device buffers)",
    "yaml": "pip install pyyaml",
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
