"""Run a bundle on real videos: numpy, OpenCV and a backend (onnxruntime or TensorRT), no torch.

    from videploy import runtime
    rec = runtime.load("bundle/", backend="onnxruntime", device="cpu")
    result = rec.predict("video.mp4", top_k=5)

This package imports neither torch nor anything from ``videploy.models`` / ``videploy.export``: it is
what ships to an edge device. ``video`` decodes and preprocesses, ``sampling`` holds the official
frame-index formulas, ``backends`` run graphs, ``adaptive`` runs AdaFocusV3 with real early exits,
``recognizer`` puts it together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from videploy.runtime.recognizer import Recognizer, load

__all__ = ["Prediction", "Recognizer", "load"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import videploy.runtime.video` (used by export) stays light.
    if name in ("load", "Recognizer", "Prediction"):
        from videploy.runtime import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'videploy.runtime' has no attribute {name!r}")
