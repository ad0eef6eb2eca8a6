"""Parity of an exported bundle with the PyTorch model it came from, on real video.

Inputs are frames of a real video (the runtime's sample clip unless the caller gives one) decoded
by :func:`videploy.runtime.video.decode_views` with the model's own preprocessing, so the numbers
that are compared are the ones a deployment sees. A batch larger than one is built from the same
clip by flipping it horizontally and reversing it in time (still natural images, different
samples), which also proves the dynamic batch dimension works.

The comparison itself is the runtime's (:func:`videploy.runtime.compare.compare_backends`): the
staged bundle is opened with the real :class:`~videploy.runtime.backends.onnxruntime.OnnxRuntimeBackend`
and with the PyTorch reference backend on the same model, and both run the recognizer's own path
(AdaFocusV3: the one chain, every exit), so verification tests exactly what ``predict`` runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from videploy.bundle.bundle import Bundle
from videploy.bundle.manifest import BatchRange, Preprocessing
from videploy.runtime.compare import Tolerance, VerificationReport, compare_backends

if TYPE_CHECKING:  # pragma: no cover
    from videploy.models.base import VideoModel

DEFAULT_BATCH_SIZES = (1, 2)


# --- inputs ------------------------------------------------------------------------------------
def real_views(preprocessing: Preprocessing, source: str | Path | None = None) -> tuple[np.ndarray, str]:
    """One view (1, T, 3, H, W) float32 of a real video decoded with ``preprocessing``, and its description."""
    from videploy.runtime.samples import sample_video_path
    from videploy.runtime.video import decode_views

    path = Path(source) if source is not None else sample_video_path()
    views = decode_views(path, preprocessing, num_clips=1, num_crops=1)
    return np.ascontiguousarray(views[:1], dtype=np.float32), f"{path.name} decoded with the model's preprocessing ({preprocessing.sampling} sampling)"


def batch_of(view: np.ndarray, n: int) -> np.ndarray:
    """``n`` natural samples from one view (1, T, 3, H, W): itself, mirrored, time-reversed, both, then rolled."""
    x = view[0]
    variants = [x, x[..., ::-1], x[::-1], x[::-1, ..., ::-1]]
    out = []
    for i in range(n):
        v = variants[i % 4]
        if i >= 4:
            v = np.roll(v, shift=i // 4, axis=0)
        out.append(v)
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)



def verify(
    bundle: Bundle,
    model: "VideoModel",
    view: np.ndarray,
    inputs_description: str,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    tolerance: Tolerance | None = None,
    threads: int | None = None,
) -> VerificationReport:
    """Compare the bundle's ONNX graphs on onnxruntime (CPU) with ``model`` on the PyTorch reference
    backend, through the runtime, on batches built from ``view``.

    The graphs are always batch-dynamic, so the batches checked need not lie in the bundle's
    (TensorRT profile) batch range: verification opens the bundle with a range that covers them.
    """
    from videploy.export.torch_backend import TorchBackend
    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

    wide = dataclasses.replace(bundle.manifest, batch=BatchRange(1, 1, max(max(batch_sizes), bundle.manifest.batch.max)))
    checked = bundle.with_manifest(wide)
    reference = TorchBackend(checked, model=model)
    candidate = OnnxRuntimeBackend(checked, threads=threads)
    try:
        return compare_backends(reference, candidate, [batch_of(view, n) for n in batch_sizes], inputs_description, tolerance)
    finally:
        candidate.close()
        reference.close()
