"""Parity of the exported ONNX graphs with the PyTorch modules they came from, on real video.

Inputs are frames of a real video (the runtime's sample clip unless the caller gives one) decoded
by :func:`videploy.runtime.video.decode_views` with the model's own preprocessing, so the numbers
that are compared are the ones a deployment sees. A batch larger than one is built from the same
clip by flipping it horizontally and reversing it in time (still natural images, different
samples), which also proves the dynamic batch dimension works.

Single-graph families: ``main`` runs in onnxruntime and in PyTorch at each batch size.
AdaFocusV3: the whole chain runs twice, once with onnxruntime sessions and once with the PyTorch
graph modules, each carrying its *own* state exactly as the runtime does (glance -> policy ->
local step 0..Tf-1, frames gathered by the policy's ``frame_indices``, ``local_state`` from zeros);
every output of every call is compared, so a difference anywhere in the chain shows up at the exit
where it happens. Integer outputs (``frame_indices``) must match exactly.

Criterion (per output and call; documented in the manifest's ``verification.criterion``):
``max|onnx - torch| <= atol + rtol * max|torch|`` and ``cosine(onnx, torch) >= min_cosine``
(cosine is waived when the whole difference is below ``atol``, e.g. an all-zero state).
``max_rel`` in the report is ``max|onnx - torch| / max|torch|``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from videploy.bundle.manifest import EarlyExit, Preprocessing
from videploy.errors import VideployError
from videploy.jsonsafe import encode_float
from videploy.optional import require

if TYPE_CHECKING:  # pragma: no cover
    from videploy.models.base import GraphModule

# graph role -> input name -> array; returns output name -> array
Runner = Callable[[str, Mapping[str, np.ndarray]], dict[str, np.ndarray]]

DEFAULT_BATCH_SIZES = (1, 2)


@dataclass(frozen=True)
class Tolerance:
    """fp32 parity thresholds (see the module docstring for how they combine)."""

    rtol: float = 1e-4
    atol: float = 1e-4
    min_cosine: float = 0.9999

    def criterion(self) -> str:
        return (
            f"max|onnx-torch| <= {self.atol:g} + {self.rtol:g} * max|torch| and cosine >= {self.min_cosine} "
            f"(cosine waived when max|onnx-torch| <= {self.atol:g}); integer outputs exact"
        )


@dataclass(frozen=True)
class OutputReport:
    """One output of one graph call compared between onnxruntime and PyTorch."""

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
            "backend": "onnxruntime CPUExecutionProvider vs PyTorch (fp32)",
            "inputs": self.inputs,
            "batch_sizes": list(self.batch_sizes),
            "tolerance": asdict(self.tolerance),
            "criterion": self.tolerance.criterion(),
            "outputs": rows,
        }


def compare(graph: str, output: str, call: str, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> OutputReport:
    """Compare one output (``ref`` from PyTorch, ``got`` from ONNX) under ``tol``."""
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


# --- runners -----------------------------------------------------------------------------------
def ort_runner(files: Mapping[str, Path], threads: int | None = None) -> Runner:
    """Run bundle graphs with onnxruntime (CPU), the way the runtime's ONNX backend does."""
    ort = require("onnxruntime", "verifying exported graphs")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    sessions = {role: ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"]) for role, path in files.items()}

    def run(role: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = sessions[role]
        names = [o.name for o in sess.get_outputs()]
        outs = sess.run(names, {i.name: feeds[i.name] for i in sess.get_inputs()})
        return dict(zip(names, outs))

    return run


def torch_runner(modules: Mapping[str, "GraphModule"]) -> Runner:
    """Run the PyTorch graph modules with numpy in and out (the reference side)."""
    torch = require("torch", "verifying exported graphs")

    def run(role: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        module = modules[role]
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in module.input_names]
        with torch.inference_mode():
            out = module(*args)
        if isinstance(out, torch.Tensor):
            out = (out,)
        if len(out) != len(module.output_names):
            raise VideployError(f"graph '{role}' returned {len(out)} outputs but declares {list(module.output_names)}")
        return {n: t.detach().cpu().numpy() for n, t in zip(module.output_names, out)}

    return run


def adafocus_chain(run: Runner, video: np.ndarray, early_exit: EarlyExit) -> list[tuple[str, str, dict[str, np.ndarray]]]:
    """Glance -> policy -> every local step, as the runtime runs it; returns (role, step label, outputs) per call."""
    b = video.shape[0]
    calls: list[tuple[str, str, dict[str, np.ndarray]]] = []
    g = run("glance", {"frames": np.ascontiguousarray(video[:, list(early_exit.glance_indices)])})
    calls.append(("glance", "exit 0", g))
    p = run("policy", {"featmap": g["featmap"], "global_feat": g["global_feat"]})
    calls.append(("policy", "", p))
    idx = p["frame_indices"]
    if idx.shape != (b, early_exit.num_steps, early_exit.frames_per_cube):
        raise VideployError(
            f"policy frame_indices has shape {idx.shape}, expected (batch, num_steps, frames_per_cube) = "
            f"({b}, {early_exit.num_steps}, {early_exit.frames_per_cube})"
        )
    if idx.min() < 0 or idx.max() >= video.shape[1]:
        raise VideployError(f"policy frame_indices {idx.min()}..{idx.max()} fall outside the {video.shape[1]} sampled frames")
    state = np.zeros((b, early_exit.state_size), dtype=np.float32)
    rows = np.arange(b)[:, None]
    for t in range(early_exit.num_steps):
        feeds = {
            "frames": np.ascontiguousarray(video[rows, idx[:, t, :]]),
            "action": np.ascontiguousarray(p["actions"][:, t]),
            "step": np.full((b,), t, dtype=np.int64),
            "local_state": state,
            "global_state": g["global_state"],
        }
        out = run("local", feeds)
        calls.append(("local", f"step {t} exit {t + 1}", out))
        state = out["next_local_state"]
    return calls


def verify(
    modules: Mapping[str, "GraphModule"],
    files: Mapping[str, Path],
    view: np.ndarray,
    inputs_description: str,
    early_exit: EarlyExit | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    tolerance: Tolerance | None = None,
    threads: int | None = None,
) -> VerificationReport:
    """Compare ONNX (``files``) with PyTorch (``modules``) on batches built from ``view``."""
    tolerance = tolerance or Tolerance()
    onnx_run = ort_runner(files, threads=threads)
    torch_run = torch_runner(modules)
    results: list[OutputReport] = []
    for n in batch_sizes:
        video = batch_of(view, n)
        if early_exit is None:
            (role,) = tuple(modules)
            name = modules[role].input_names[0]
            calls_t = [(role, "", torch_run(role, {name: video}))]
            calls_o = [(role, "", onnx_run(role, {name: video}))]
        else:
            calls_t = adafocus_chain(torch_run, video, early_exit)
            try:
                calls_o = adafocus_chain(onnx_run, video, early_exit)
            except VideployError as exc:
                raise VideployError(f"the ONNX AdaFocusV3 chain fails at batch {n}: {exc}") from exc
        # the chain length depends only on early_exit, so both sides made the same calls
        for (role, label, ref), (_, _, got) in zip(calls_t, calls_o, strict=True):
            call = f"batch {n}" + (f" {label}" if label else "")
            for out_name in modules[role].output_names:
                results.append(compare(role, out_name, call, ref[out_name], got[out_name], tolerance))
    passed = all(r.passed for r in results)
    return VerificationReport(passed, tolerance, inputs_description, tuple(batch_sizes), tuple(results))
