"""Graph simplification with onnxslim (constant folding, dead-code and redundant-op removal, fusions).

onnxslim is maintained and pure Python; its default fusions produce standard ONNX ops only
(Conv+BN, MatMul+Add -> Gemm, ...), so a slimmed graph still parses in TensorRT. Parity is not
assumed: export verifies the *slimmed* graph against PyTorch.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import TYPE_CHECKING

from videploy.errors import VideployError
from videploy.export.onnx_export import name_batch_dims
from videploy.optional import require

if TYPE_CHECKING:  # pragma: no cover
    import onnx


def simplify(model: "onnx.ModelProto", role: str) -> "onnx.ModelProto":
    """A simplified copy of ``model`` (the argument is not modified); batch dims stay ``"batch"``."""
    onnx = require("onnx", "simplifying ONNX graphs")
    onnxslim = require("onnxslim", "simplifying ONNX graphs")
    work = onnx.ModelProto()
    work.CopyFrom(model)
    # onnxslim logs / prints summaries on its own; keep library output clean.
    sink = io.StringIO()
    slim_logger = logging.getLogger("onnxslim")
    level = slim_logger.level
    try:
        slim_logger.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(sink):
            slimmed = onnxslim.slim(work)
    except (ValueError, RuntimeError, KeyError, AttributeError, TypeError) as exc:
        raise VideployError(f"onnxslim failed on graph '{role}' ({type(exc).__name__}: {exc}); export again with --no-simplify") from exc
    finally:
        slim_logger.setLevel(level)
    if not isinstance(slimmed, onnx.ModelProto):
        raise VideployError(f"onnxslim returned {type(slimmed).__name__} for graph '{role}', not a model; export again with --no-simplify")
    name_batch_dims(slimmed)
    return slimmed


def onnxslim_version() -> str | None:
    try:
        import onnxslim
    except ImportError:
        return None
    return str(getattr(onnxslim, "__version__", "unknown"))
