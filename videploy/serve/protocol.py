"""The request and response tensors of a served bundle, and request validation.

Free of Triton and PyTriton so the rules can be tested (and reused by a custom client) without
a server. Every tensor has Triton's batch dimension first; the shapes below are per request.

Inputs (exactly one per request):

* ``video`` BYTES ``[1]``: an encoded video file (mp4, avi, mkv, webm ...), the file's bytes;
* ``frames`` UINT8 ``[T, H, W, 3]``: decoded RGB frames, any T, H, W.

Outputs:

* ``top_indices`` INT64 ``[k]``, ``top_probabilities`` FP32 ``[k]``, ``top_labels`` BYTES ``[k]``
  (class names, or ``class i`` for a bundle without labels);
* ``exit_step`` INT32 ``[1]``: AdaFocusV3's exit (0 = glance only); -1 for non-adaptive models;
* ``gflops`` FP32 ``[1]``: compute spent on this video;
* ``error`` BYTES ``[1]``: empty on success, else why this request failed (its other outputs
  are then -1 / 0 / empty). When every request of a batch fails, the server also answers with
  a Triton error carrying the messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from videploy.errors import VideployError

VIDEO = "video"
FRAMES = "frames"


@dataclass(frozen=True)
class TensorDecl:
    """One tensor of the model: Triton's dtype name, numpy dtype and per-request shape (-1 = any)."""

    name: str
    triton_dtype: str
    dtype: type
    shape: tuple[int, ...]
    optional: bool = False


def inputs() -> tuple[TensorDecl, ...]:
    return (
        TensorDecl(VIDEO, "BYTES", np.bytes_, (1,), optional=True),
        TensorDecl(FRAMES, "UINT8", np.uint8, (-1, -1, -1, 3), optional=True),
    )


def outputs(top_k: int) -> tuple[TensorDecl, ...]:
    return (
        TensorDecl("top_indices", "INT64", np.int64, (top_k,)),
        TensorDecl("top_probabilities", "FP32", np.float32, (top_k,)),
        TensorDecl("top_labels", "BYTES", np.bytes_, (top_k,)),
        TensorDecl("exit_step", "INT32", np.int32, (1,)),
        TensorDecl("gflops", "FP32", np.float32, (1,)),
        TensorDecl("error", "BYTES", np.bytes_, (1,)),
    )


@dataclass(frozen=True)
class EncodedVideo:
    """A request's video file, still encoded."""

    data: bytes


def parse_request(tensors: Mapping[str, np.ndarray], max_upload_bytes: int) -> EncodedVideo | np.ndarray:
    """The video a request carries: :class:`EncodedVideo` or a (T, H, W, 3) uint8 frame array.

    ``tensors`` hold one request's inputs *without* the batch dimension. Sizes are checked
    before anything is copied, written or decoded.
    """
    given = [n for n in (VIDEO, FRAMES) if tensors.get(n) is not None]
    if len(given) != 1:
        raise VideployError(
            f"a request must carry exactly one of the inputs '{VIDEO}' (the bytes of a video file, BYTES [1]) or "
            f"'{FRAMES}' (decoded RGB frames, UINT8 [T, H, W, 3]); it carried {given or 'neither'}"
        )
    limit_mb = max_upload_bytes / 2**20
    if given[0] == VIDEO:
        arr = np.asarray(tensors[VIDEO])
        if arr.size != 1:
            raise VideployError(f"input '{VIDEO}' must hold one video file (shape [1] per request), got shape {list(arr.shape)}")
        data = arr.reshape(-1)[0]
        if isinstance(data, str):  # a client that sent text, not bytes
            raise VideployError(f"input '{VIDEO}' must hold the bytes of a video file, got text; read the file in binary mode ('rb')")
        data = bytes(data)
        if len(data) > max_upload_bytes:
            raise VideployError(f"the uploaded video has {len(data) / 2**20:.1f} MB, more than this server's limit of {limit_mb:g} MB (--max-upload-mb); send a shorter or re-encoded video")
        if not data:
            raise VideployError(f"input '{VIDEO}' is empty (0 bytes); send the bytes of a video file")
        return EncodedVideo(data)
    frames = np.asarray(tensors[FRAMES])
    if frames.nbytes > max_upload_bytes:
        raise VideployError(f"the uploaded frames have {frames.nbytes / 2**20:.1f} MB, more than this server's limit of {limit_mb:g} MB (--max-upload-mb); send fewer or smaller frames, or the encoded video")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideployError(f"input '{FRAMES}' must be uint8 RGB frames of shape [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


def response(top: list[tuple[int, float, str]], top_k: int, exit_step: int, gflops: float) -> dict[str, np.ndarray]:
    """One successful response; ``top`` is (index, probability, label) most probable first, padded to ``top_k``."""
    pad = top_k - len(top)
    return {
        "top_indices": np.array([i for i, _, _ in top] + [-1] * pad, dtype=np.int64),
        "top_probabilities": np.array([p for _, p, _ in top] + [0.0] * pad, dtype=np.float32),
        "top_labels": np.array([name.encode() for _, _, name in top] + [b""] * pad, dtype=np.object_),
        "exit_step": np.array([exit_step], dtype=np.int32),
        "gflops": np.array([gflops], dtype=np.float32),
        "error": np.array([b""], dtype=np.object_),
    }


def error_response(message: str, top_k: int) -> dict[str, np.ndarray]:
    out = response([], top_k, exit_step=-1, gflops=0.0)
    out["error"] = np.array([message.encode()], dtype=np.object_)
    return out
