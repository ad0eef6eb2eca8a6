"""Comparing two backends on the same bundle, call by call, through the runtime's own path.

The shape of Polygraphy's ``Comparator.run(runners, data_loader)``: :func:`compare_backends` takes a
*reference* and a *candidate* backend on one bundle and a list of input batches, runs each batch
through the recognizer's real path on both (``main`` for single-graph families; the one AdaFocusV3
chain, :class:`~videploy.runtime.adaptive.AdaptiveRunner`, with every exit forced, each side
carrying its own state), records every backend call (:meth:`Backend.recording`) and compares every
output of every call. A difference anywhere in the chain shows at the call where it happens.

Export uses it for onnxruntime vs PyTorch; engine building for TensorRT vs onnxruntime. Torch-free.

Criterion (per output and call; written into the manifest's ``verification.criterion``):
``max|candidate - reference| <= atol + rtol * max|reference|`` and
``cosine(candidate, reference) >= min_cosine`` (cosine is waived when the whole difference is below
``atol``, e.g. an all-zero state); integer outputs (``frame_indices``) must be identical.
``max_rel`` in the report is ``max|candidate - reference| / max|reference|``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from videploy.jsonsafe import encode_float

from videploy.errors import VideployError
from videploy.runtime.backends.base import Backend, Call

@dataclass(frozen=True)
class Tolerance:
    """fp32 parity thresholds (see the module docstring for how they combine)."""

    rtol: float = 1e-4
    atol: float = 1e-4
    min_cosine: float = 0.9999

    def criterion(self) -> str:
        return (
            f"max|candidate-reference| <= {self.atol:g} + {self.rtol:g} * max|reference| and cosine >= {self.min_cosine} "
            f"(cosine waived when max|candidate-reference| <= {self.atol:g}); integer outputs exact"
        )


@dataclass(frozen=True)
class OutputReport:
    """One output of one graph call compared between a reference and a candidate backend."""

    graph: str
    output: str
    call: str  # "batch 2", "batch 2 step 3", ...
    shape: tuple[int, ...]
    dtype: str
    max_abs: float
    max_rel: float
    cosine: float
    top1: float | None  # fraction of rows whose argmax agrees (logits only)
    exact: bool  # integer output: compared for equality
    passed: bool

    def describe(self) -> str:
        if self.exact:
            state = "identical" if self.passed else f"{self.max_rel:.1%} of the elements differ (by up to {self.max_abs:g})"
            return f"{self.graph}.{self.output} [{self.call}]: {state}"
        top1 = f", top-1 agreement {self.top1:.0%}" if self.top1 is not None else ""
        return (
            f"{self.graph}.{self.output} [{self.call}]: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, "
            f"cosine {self.cosine:.7f}{top1}"
        )


@dataclass(frozen=True)
class VerificationReport:
    passed: bool
    tolerance: Tolerance
    inputs: str
    batch_sizes: tuple[int, ...]
    results: tuple[OutputReport, ...] = field(default_factory=tuple)
    backends: str = "onnxruntime CPUExecutionProvider vs PyTorch (fp32)"  # "candidate vs reference"

    def failures(self) -> list[OutputReport]:
        return [r for r in self.results if not r.passed]

    def worst(self) -> list[OutputReport]:
        """One row per (graph, output): the call with the largest relative error."""
        best: dict[tuple[str, str], OutputReport] = {}
        for r in self.results:
            key = (r.graph, r.output)
            cur = best.get(key)
            if cur is None or (not r.passed and cur.passed) or (r.passed == cur.passed and r.max_rel > cur.max_rel):
                best[key] = r
        return list(best.values())

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``verification`` object (plain JSON)."""
        rows = []
        for r in self.results:
            d = asdict(r)
            d["shape"] = list(r.shape)
            for k in ("max_abs", "max_rel", "cosine"):
                d[k] = encode_float(d[k])
            rows.append(d)
        return {
            "passed": self.passed,
            "backend": self.backends,
            "inputs": self.inputs,
            "batch_sizes": list(self.batch_sizes),
            "tolerance": asdict(self.tolerance),
            "criterion": self.tolerance.criterion(),
            "outputs": rows,
        }




def compare(graph: str, output: str, call: str, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> OutputReport:
    """Compare one output (``ref`` from the reference backend, ``got`` from the candidate) under ``tol``."""
    ref = np.asarray(ref)
    got = np.asarray(got)
    if ref.shape != got.shape:
        return OutputReport(graph, output, call, tuple(got.shape), str(got.dtype), math.inf, math.inf, 0.0, None, False, False)
    if not np.issubdtype(ref.dtype, np.floating) or not np.issubdtype(got.dtype, np.floating):
        # integer / bool outputs (frame indices) must be identical, dtype kind included
        same_kind = ref.dtype.kind == got.dtype.kind
        differ = ref != got
        max_abs = float(np.abs(ref.astype(np.int64) - got.astype(np.int64)).max()) if ref.size else 0.0
        frac = float(differ.mean()) if ref.size else 0.0
        ok = same_kind and not differ.any()
        return OutputReport(graph, output, call, tuple(ref.shape), str(got.dtype), max_abs, frac, 1.0 if ok else 0.0, None, True, ok)
    r = ref.astype(np.float64).ravel()
    g = got.astype(np.float64).ravel()
    finite_r, finite_g = np.isfinite(r), np.isfinite(g)
    if not (finite_r.all() and finite_g.all()):
        # inf / nan must sit at the same places with the same values; the finite rest is compared
        if not (np.array_equal(finite_r, finite_g) and np.array_equal(r[~finite_r], g[~finite_g], equal_nan=True)):
            return OutputReport(graph, output, call, tuple(ref.shape), str(got.dtype), math.inf, math.inf, 0.0, None, False, False)
        r, g = r[finite_r], g[finite_g]
    diff = np.abs(r - g)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(r).max()) if r.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    nr, ng = float(np.linalg.norm(r)), float(np.linalg.norm(g))
    if nr == 0 and ng == 0:
        cosine = 1.0
    elif nr == 0 or ng == 0:
        cosine = 0.0
    else:
        cosine = float(np.dot(r, g) / (nr * ng))
    top1 = None
    if output == "logits" and ref.ndim == 2:
        top1 = float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))
    ok = max_abs <= tol.atol + tol.rtol * scale and (cosine >= tol.min_cosine or max_abs <= tol.atol)
    return OutputReport(graph, output, call, tuple(ref.shape), str(got.dtype), max_abs, max_rel, cosine, top1, False, bool(ok))



# --- running both sides through the runtime's path -------------------------------------------------
def record_calls(backend: Backend, batch: np.ndarray) -> list[Call]:
    """Every backend call the runtime makes for ``batch`` (views (n, T, 3, H, W)), every exit forced."""
    from videploy.runtime.recognizer import Recognizer

    rec = Recognizer(backend.bundle, backend=backend)
    with backend.recording() as calls:
        if rec.adaptive is not None:
            exits = rec.adaptive.ee.num_steps + 1
            rec.adaptive.run(list(batch), thresholds=[-math.inf] * exits, batch_size=len(batch))
        else:
            rec.logits(batch)
    return list(calls)


def call_labels(calls: Sequence[Call]) -> list[str]:
    """``"exit 0"`` for the glance, ``"step t exit t+1"`` for local step t (0-based), ``""`` otherwise."""
    labels, step = [], 0
    for c in calls:
        if c.role == "glance":
            labels.append("exit 0")
        elif c.role == "local":
            labels.append(f"step {step} exit {step + 1}")
            step += 1
        else:
            labels.append("")
    return labels


def compare_backends(
    reference: Backend,
    candidate: Backend,
    batches: Sequence[np.ndarray],
    inputs_description: str,
    tolerance: Tolerance | None = None,
) -> VerificationReport:
    """Run each batch through the runtime on both backends and compare every output of every call."""
    tolerance = tolerance or Tolerance()
    results: list[OutputReport] = []
    for batch in batches:
        n = int(batch.shape[0])
        ref_calls = record_calls(reference, batch)
        try:
            got_calls = record_calls(candidate, batch)
        except VideployError as exc:
            raise VideployError(f"the {candidate.name} backend fails at batch {n}: {exc}") from exc
        if [c.role for c in ref_calls] != [c.role for c in got_calls]:
            raise VideployError(
                f"the {candidate.name} and {reference.name} backends made different calls at batch {n}: "
                f"{[c.role for c in got_calls]} vs {[c.role for c in ref_calls]}"
            )
        for ref, got, label in zip(ref_calls, got_calls, call_labels(ref_calls)):
            call = f"batch {n}" + (f" {label}" if label else "")
            for spec in reference.graph(ref.role).outputs:
                results.append(compare(ref.role, spec.name, call, ref.outputs[spec.name], got.outputs[spec.name], tolerance))
    passed = all(r.passed for r in results)
    names = f"{_describe(candidate)} vs {_describe(reference)}"
    return VerificationReport(passed, tolerance, inputs_description, tuple(int(b.shape[0]) for b in batches), tuple(results), names)


def _describe(backend: Backend) -> str:
    if backend.name == "onnxruntime":
        return f"onnxruntime {getattr(backend, 'providers', ['CPUExecutionProvider'])[0]}"
    if backend.name == "torch":
        return f"PyTorch ({backend.precision or 'fp32'})"
    return f"{backend.name} ({backend.precision or 'fp32'})"
