"""How closely an INT8 variant follows FP32 on held-out clips, through the runtime's own path.

Both sides run in onnxruntime on the CPU: the bundle's FP32 graphs and one INT8 variant. Every
held-out clip goes through :func:`videploy.runtime.compare.compare_backends` (AdaFocusV3: the one
chain with every exit forced, each side feeding its own graphs' outputs onward), which gives per
graph, output and exit the cosine similarity and, for logits, the top-1 agreement. AdaFocusV3 adds
what a user sees change: how often the chosen cubes (frames and boxes) differ, how often a
video's exit step differs, and how often the predicted class at the exit differs, under the
bundle's exit thresholds (or, when it has none, thresholds fitted on the FP32 entropies of the
calibration clips so that an equal share leaves at every exit -- with no thresholds every video
would trivially stop at the last exit).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from videploy.bundle.bundle import Bundle
from videploy.calibration.int8.videos import Clip
from videploy.errors import VideployError
from videploy.jsonsafe import encode_float

# Cubes whose boxes move by at most this many input pixels count as the same cube.
BOX_TOLERANCE_PX = 1.0


@dataclass(frozen=True)
class OutputAgreement:
    graph: str
    output: str
    exit: int | None  # AdaFocusV3: the exit this call feeds (0 = glance, t = local step t)
    calls: int
    rows: int
    cosine_min: float | None  # float outputs
    cosine_mean: float | None
    top1: float | None  # logits: fraction of rows whose argmax agrees
    identical: float | None  # integer outputs: fraction of identical elements


@dataclass(frozen=True)
class AgreementReport:
    variant: str
    clips: int
    outputs: tuple[OutputAgreement, ...]
    prediction_agreement: float  # the class each clip is finally predicted as
    exit_step_agreement: float | None = None  # AdaFocusV3
    cube_agreement: float | None = None
    thresholds: tuple[float, ...] | None = None
    thresholds_source: str | None = None
    exit_steps_fp32: tuple[int, ...] | None = None
    exit_steps_int8: tuple[int, ...] | None = None

    def logits(self) -> list[OutputAgreement]:
        return [o for o in self.outputs if o.output == "logits"]

    def min_logit_cosine(self) -> float:
        vals = [o.cosine_min for o in self.logits() if o.cosine_min is not None]
        return min(vals) if vals else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.thresholds is not None:
            d["thresholds"] = [encode_float(x) for x in self.thresholds]
        return d

    def lines(self) -> list[str]:
        """A readable summary (the CLI prints it; ``videploy inspect`` shows the same)."""
        return summary_lines(self.to_dict())


def summary_lines(d: dict[str, Any]) -> list[str]:
    """Readable lines for an agreement report as stored in the manifest."""
    out = [f"{d['variant']} vs fp32 on {d['clips']} held-out clip(s) (onnxruntime CPU):"]
    for o in d["outputs"]:
        if o["output"] not in ("logits", "frame_indices", "actions"):
            continue
        where = f"{o['graph']}.{o['output']}" + (f" exit {o['exit']}" if o["exit"] is not None else "")
        if o["identical"] is not None:
            out.append(f"  {where}: {_fmt(o['identical'], '.1%')} identical")
        else:
            top1 = "" if o["top1"] is None else f", top-1 agreement {_fmt(o['top1'], '.1%')}"
            out.append(f"  {where}: cosine min {_fmt(o['cosine_min'], '.5f')} mean {_fmt(o['cosine_mean'], '.5f')}{top1}")
    out.append(f"  predicted class agrees for {_fmt(d['prediction_agreement'], '.1%')} of clips")
    if d.get("exit_step_agreement") is not None:
        out.append(f"  chosen cubes identical for {_fmt(d['cube_agreement'], '.1%')} of clips (boxes within {BOX_TOLERANCE_PX:g} px)")
        out.append(f"  exit step agrees for {_fmt(d['exit_step_agreement'], '.1%')} of clips (thresholds: {d['thresholds_source']})")
    return out


def _fmt(x: Any, spec: str) -> str:
    # the manifest stores non-finite numbers as strings ("nan")
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def views(clips: Sequence[Clip]) -> list[Any]:
    """Held-out clips as the recognizer's prepared inputs (already decoded and preprocessed)."""
    from videploy.runtime.video import VideoInput

    out = []
    for c in clips:
        T, _, H, W = c.frames.shape
        out.append(VideoInput(f"{c.source}#clip{c.index}", c.frames[None], np.arange(T)[None], T, 1, 1, (H, W), None))
    return out


def measure(bundle: Bundle, variant: str, clips: Sequence[Clip], batch_size: int | None = None, fit_clips: Sequence[Clip] = ()) -> AgreementReport:
    """Agreement of ``variant`` (a ``GraphSpec.variants`` key) with the FP32 graphs on ``clips``.

    ``fit_clips``: calibration clips to fit equal-exit thresholds on when the bundle has none.
    Fitted on the measured clips themselves, each threshold would sit exactly on one clip's
    entropy, and the slightest change would flip that clip's exit step.
    """
    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from videploy.runtime.compare import Tolerance, compare_backends
    from videploy.runtime.recognizer import Recognizer

    if not clips:
        raise VideployError("no held-out clips to measure agreement on; give more videos or clips (--clips-per-video, --holdout-every)")
    bs = bundle.batch_size(batch_size)
    frames = np.stack([c.frames for c in clips])
    batches = [frames[i : i + bs] for i in range(0, len(frames), bs)]
    ref = OnnxRuntimeBackend(bundle)
    cand = OnnxRuntimeBackend(bundle, precision=variant)
    try:
        # INT8 is judged by agreement, not by a parity tolerance: the verdict is ignored here
        loose = Tolerance(rtol=math.inf, atol=math.inf, min_cosine=-1.0)
        report = compare_backends(ref, cand, batches, f"{len(clips)} held-out clips", loose)
        outputs = _aggregate(report.results)
        ref_rec = Recognizer(bundle, backend=ref)
        cand_rec = Recognizer(bundle, backend=cand)
        clip_views = views(clips)
        if not bundle.adaptive:
            p_ref = ref_rec.predict_batch(clip_views, top_k=1, batch_size=bs)
            p_got = cand_rec.predict_batch(clip_views, top_k=1, batch_size=bs)
            agree = float(np.mean([a.top[0].index == b.top[0].index for a, b in zip(p_ref, p_got)]))
            return AgreementReport(variant, len(clips), outputs, agree)
        return _adaptive(bundle, variant, ref_rec, cand_rec, clip_views, outputs, bs, views(fit_clips))
    finally:
        ref.close()
        cand.close()


def _adaptive(bundle: Bundle, variant: str, ref_rec: Any, cand_rec: Any, views: list, outputs: tuple, bs: int, fit_views: list) -> AgreementReport:
    from videploy.calibration.fit_on_videos import resolve_exit_thresholds

    ee = bundle.early_exit
    forced = [-math.inf] * (ee.num_steps + 1)
    full_ref = ref_rec.predict_batch(views, top_k=1, thresholds=forced, batch_size=bs)
    full_got = cand_rec.predict_batch(views, top_k=1, thresholds=forced, batch_size=bs)
    cubes_same = [same_cubes(a.adaptive.cubes, b.adaptive.cubes) for a, b in zip(full_ref, full_got)]
    fit_on = fit_views if fit_views and ee.thresholds is None else views
    chosen = resolve_exit_thresholds(ref_rec, fit_on, batch_size=bs, default="equal exits")
    source = chosen.source if fit_on is views else f"{chosen.source}, fitted on {len(fit_on)} calibration clips"
    eta = list(chosen.values)
    p_ref = ref_rec.predict_batch(views, top_k=1, thresholds=eta, batch_size=bs)
    p_got = cand_rec.predict_batch(views, top_k=1, thresholds=eta, batch_size=bs)
    steps_ref = tuple(p.adaptive.exit_step for p in p_ref)
    steps_got = tuple(p.adaptive.exit_step for p in p_got)
    return AgreementReport(
        variant=variant,
        clips=len(views),
        outputs=outputs,
        prediction_agreement=float(np.mean([a.top[0].index == b.top[0].index for a, b in zip(p_ref, p_got)])),
        exit_step_agreement=float(np.mean([a == b for a, b in zip(steps_ref, steps_got)])),
        cube_agreement=float(np.mean(cubes_same)),
        thresholds=tuple(eta),
        thresholds_source=source,
        exit_steps_fp32=steps_ref,
        exit_steps_int8=steps_got,
    )


def same_cubes(a: Sequence[Any], b: Sequence[Any]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if tuple(x.sampled) != tuple(y.sampled):
            return False
        if np.max(np.abs(np.asarray(x.box) - np.asarray(y.box))) > BOX_TOLERANCE_PX:
            return False
    return True


_EXIT = re.compile(r"exit (\d+)")


def _aggregate(results: Sequence[Any]) -> tuple[OutputAgreement, ...]:
    """Per (graph, output, exit): calls pooled, cosine min / row-weighted mean, top-1 row-weighted."""
    groups: dict[tuple[str, str, int | None], list[Any]] = {}
    for r in results:
        m = _EXIT.search(r.call)
        key = (r.graph, r.output, int(m.group(1)) if m else None)
        groups.setdefault(key, []).append(r)
    out = []
    for (graph, output, exit_), rs in groups.items():
        rows = [r.shape[0] if r.shape else 1 for r in rs]
        n = int(sum(rows))
        w = np.asarray(rows, dtype=np.float64) / max(n, 1)
        if rs[0].exact:
            identical = float(sum(wi * (1.0 - r.max_rel) for wi, r in zip(w, rs)))
            out.append(OutputAgreement(graph, output, exit_, len(rs), n, None, None, None, identical))
            continue
        cos = [r.cosine for r in rs]
        top1 = None if rs[0].top1 is None else float(sum(wi * r.top1 for wi, r in zip(w, rs)))
        out.append(OutputAgreement(graph, output, exit_, len(rs), n, float(min(cos)), float(np.dot(w, cos)), top1, None))
    return tuple(out)
