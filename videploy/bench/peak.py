"""This machine's measured matrix-multiply peak, the yardstick for "fraction of peak".

A GFLOP/s figure means little without what the machine can do. The probe times one large fp32
MatMul graph in onnxruntime, with the same intra-op threads the backends use, in the same run as
the benchmark (so the same load and clocks apply), and keeps the best repetition. Dense layers of
a well-tuned backend come close to it; anything far below says where time is lost.

GFLOP/s here are floating-point operations (2 per multiply-accumulate). The models' costs are
quoted in the papers' "GFLOPs", which are multiply-accumulates, so achieved = 2 * GMACs / seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from videploy.optional import require


@dataclass(frozen=True)
class Peak:
    gflops_per_s: float  # floating-point operations per second / 1e9 (2 per multiply-accumulate)
    n: int
    threads: int | None
    seconds: float  # the best repetition

    def to_dict(self) -> dict[str, Any]:
        return {"gflops_per_s": self.gflops_per_s, "probe": f"onnxruntime MatMul fp32 {self.n}x{self.n} @ {self.n}x{self.n}, best of its repetitions", "threads": self.threads, "seconds": self.seconds}


def matmul_peak(threads: int | None = None, n: int = 1024, repeat: int = 7) -> Peak:
    """Best-of-``repeat`` fp32 GFLOP/s of an (n x n) @ (n x n) MatMul in onnxruntime with ``threads``."""
    onnx = require("onnx", "the matrix-multiply probe")
    ort = require("onnxruntime", "the matrix-multiply probe")
    from onnx import TensorProto, helper

    from videploy.runtime.backends.onnxruntime import session_options

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul_probe",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), sess_options=session_options(ort, threads), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
    session.run(None, feed)  # warm-up
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return Peak(gflops_per_s=2.0 * n**3 / best / 1e9, n=n, threads=threads, seconds=best)
