"""The recognizer: a bundle + a backend -> predictions on videos.

    rec = videploy.runtime.load("bundle/")               # onnxruntime on the CPU
    result = rec.predict("video.mp4", top_k=5)
    print(result.top[0].label, result.top[0].probability, result.gflops)

Single-graph families (Video-FocalNet, STAM) run every view of every video through ``main`` in
batches of up to the bundle's maximum; multi-view results average the per-view softmax, as
Video-FocalNet's official evaluation does (STAM and AdaFocusV3 evaluate one view). AdaFocusV3 runs
through :class:`~videploy.runtime.adaptive.AdaptiveRunner` with real early exits.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from videploy.bundle.bundle import Bundle, BundleLike
from videploy.bundle.manifest import Manifest
from videploy import jsonsafe
from videploy.errors import VideployError
from videploy.jsonsafe import encode_float
from videploy.runtime.adaptive import AdaptiveOutcome, AdaptiveRunner, Cube
from videploy.runtime.backends import BackendSpec, open_backend
from videploy.runtime.exit_criteria import never_stops
from videploy.runtime.labels import read_labels
from videploy.runtime.pipeline import ordered_prefetch
from videploy.runtime.video import VideoInput, VideoSource, load_video

ViewSpec = Union[None, str, Sequence[int]]


# What a cube's "box_xyxy" is measured in (written next to the boxes in every JSON result).
BOX_COORDINATES = "box_xyxy: x1, y1, x2, y2 in pixels of the model's input frame (the video resized and centre-cropped to preprocessing.crop_size)"


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds for one video: decoding + preprocessing, and from decode start to result."""

    decode_s: float
    latency_s: float


@dataclass(frozen=True)
class ClassScore:
    index: int
    probability: float
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label if self.label is not None else f"class {self.index}"


@dataclass(frozen=True)
class AdaptiveTrace:
    """How far an AdaFocusV3 video went: its exit, the cubes it looked at, the entropies seen."""

    exit_step: int  # 0 = glance only; t = after t local steps
    num_steps: int  # the most it could have taken
    cubes: tuple[Cube, ...]
    entropies: tuple[float, ...]  # entropy (nats) at exits 0..exit_step
    thresholds: tuple[float, ...]
    full_gflops: float  # cost had it run every step


@dataclass(frozen=True)
class Prediction:
    """The result for one video."""

    source: str
    model_name: str
    family: str
    top: tuple[ClassScore, ...]  # top-k, most probable first
    probabilities: np.ndarray  # (num_classes,) softmax (averaged over views)
    views: tuple[int, int]  # (clips, crops)
    frame_indices: np.ndarray  # (clips, T) frames of the video that were sampled
    num_frames: int
    gflops: float  # compute actually spent on this video
    random_weights: bool  # the bundle was exported without a checkpoint: predictions mean nothing
    notes: tuple[str, ...] = ()
    adaptive: AdaptiveTrace | None = None
    display_frames: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    timing: Timing | None = dataclasses.field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (no display frames)."""
        d: dict[str, Any] = {
            "source": self.source,
            "model": self.model_name,
            "family": self.family,
            "top": [{"index": c.index, "label": c.label, "probability": c.probability} for c in self.top],
            "views": {"clips": self.views[0], "crops": self.views[1]},
            "frame_indices": self.frame_indices.tolist(),
            "num_frames": self.num_frames,
            "gflops": self.gflops,
            "random_weights": self.random_weights,
            "notes": list(self.notes),
            "timing": None if self.timing is None else {"decode_s": self.timing.decode_s, "latency_s": self.timing.latency_s},
        }
        if self.adaptive is not None:
            a = self.adaptive
            d["adaptive"] = {
                "exit_step": a.exit_step,
                "num_steps": a.num_steps,
                "full_gflops": a.full_gflops,
                "thresholds": [encode_float(x) for x in a.thresholds],
                "entropies": a.entropies,
                "box_coordinates": BOX_COORDINATES,
                "cubes": [
                    {"step": c.step, "frames": list(c.frames), "sampled": list(c.sampled), "box_xyxy": list(c.box), "action_yx_scale": list(c.action)}
                    for c in a.cubes
                ],
            }
        return jsonsafe.encode(d)


def parse_views(manifest: Manifest, views: ViewSpec) -> tuple[int, int]:
    """(clips, crops) for a view spec on a bundle: ``None`` -> (1, 1); ``"official"`` -> the manifest's
    protocol; ``"4x3"`` or (4, 3) -> (clips, crops). AdaFocusV3 evaluates one view."""
    pre = manifest.preprocessing
    if views is None:
        clips, crops = 1, 1
    elif isinstance(views, str):
        if views == "official":
            clips, crops = pre.num_clips, pre.num_crops
        else:
            parts = views.lower().split("x")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise VideployError(f"views must look like CLIPSxCROPS (e.g. 4x3, 1x1) or 'official', got {views!r}")
            clips, crops = int(parts[0]), int(parts[1])
    else:
        vs = tuple(int(v) for v in views)
        if len(vs) != 2:
            raise VideployError(f"views must be (clips, crops), got {views!r}")
        clips, crops = vs
    if clips < 1 or crops not in (1, 3):
        raise VideployError(f"views {clips}x{crops}: clips must be >= 1 and crops 1 (centre) or 3 (three-crop)")
    if manifest.early_exit is not None and (clips, crops) != (1, 1):
        raise VideployError(
            f"{manifest.model_name!r} is adaptive (AdaFocusV3), which evaluates one view per video (as the official "
            f"evaluation does); drop --views or use 1x1, not {clips}x{crops}"
        )
    return clips, crops


def load(
    bundle: BundleLike,
    backend: BackendSpec = "onnxruntime",
    device: str | None = None,
    labels: str | Path | None = None,
    precision: str | None = None,
    decode_workers: int = 1,
    policy: str = "learned",
    lazy_frames: bool = True,
    **backend_options: Any,
) -> "Recognizer":
    """Open a bundle (a directory or a :class:`~videploy.bundle.bundle.Bundle`) for prediction.

    ``backend``: a registered name (``"onnxruntime"``, ``"tensorrt"``, ``"torch"``; see
    :data:`videploy.runtime.backends.BACKENDS`), a :class:`Backend` instance, or a factory
    ``(bundle, device=..., precision=..., **options) -> Backend``. ``device``: None for the
    backend's default. ``labels``: a class-name file that overrides the bundle's.
    ``decode_workers``: threads decoding the next videos while the backend runs (0: decode inline).
    ``policy``: AdaFocusV3's ``"learned"`` policy graph, or ``"random"`` cubes (the baseline).
    ``lazy_frames``: AdaFocusV3 prepares a video's focus frames only when it reaches their step
    (False: all sampled frames up front, as for other families).
    ``backend_options`` go to the backend (e.g. ``threads=1`` for onnxruntime).
    """
    return Recognizer(
        bundle, backend=backend, device=device, labels=labels, precision=precision, decode_workers=decode_workers, policy=policy, lazy_frames=lazy_frames, **backend_options
    )


class Recognizer:
    """A loaded bundle. Use :func:`load` to make one."""

    def __init__(
        self,
        bundle: BundleLike,
        backend: BackendSpec = "onnxruntime",
        device: str | None = None,
        labels: str | Path | None = None,
        precision: str | None = None,
        decode_workers: int = 1,
        policy: str = "learned",
        lazy_frames: bool = True,
        **backend_options: Any,
    ):
        if decode_workers < 0:
            raise VideployError(f"decode_workers must be >= 0, got {decode_workers}")
        self.decode_workers = int(decode_workers)  # threads decoding ahead of inference (0: inline)
        # AdaFocusV3: focus frames prepared only for videos that reach their step (runtime/lazy_frames.py)
        self.lazy_frames = bool(lazy_frames)
        self._prefetch: ThreadPoolExecutor | None = None  # prepares the next focus frames (threads start on first use)
        self.bundle = bundle = Bundle.of(bundle)
        self.manifest: Manifest = bundle.manifest
        m = self.manifest
        self.backend = open_backend(backend, bundle, device=device, precision=precision, **backend_options)
        label_file = Path(labels) if labels is not None else (bundle.path(m.labels) if m.labels else None)
        self.labels: tuple[str, ...] | None = read_labels(label_file, m.num_classes) if label_file is not None else None
        if policy != "learned" and not bundle.adaptive:
            raise VideployError(f"policy={policy!r} applies to adaptive (AdaFocusV3) bundles; {m.model_name!r} is a {m.family} bundle")
        self.adaptive = AdaptiveRunner(self.backend, policy=policy) if bundle.adaptive else None
        if self.adaptive is not None and self.lazy_frames and self.decode_workers > 0:
            self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videploy-focus")

    @property
    def bundle_dir(self) -> Path:
        return self.bundle.root

    @property
    def counters(self):
        """Backend calls and batch rows per graph role since load (or the last ``counters.reset()``)."""
        return self.backend.counters

    @property
    def random_weights(self) -> bool:
        return self.manifest.weights is None

    def close(self, backend: bool = True) -> None:
        """Stop the recognizer's threads and (``backend=False``: unless the backend is shared) close the backend."""
        if self._prefetch is not None:
            self._prefetch.shutdown(wait=True, cancel_futures=True)
            self._prefetch = None
        if backend:
            self.backend.close()

    # --- inputs -----------------------------------------------------------------------------------
    def views(self, views: ViewSpec) -> tuple[int, int]:
        """``None`` -> (1, 1); ``"official"`` -> the manifest's protocol; ``"4x3"`` or (4, 3) -> (clips, crops)."""
        return parse_views(self.manifest, views)

    def prepare(self, video: VideoSource | VideoInput, views: ViewSpec = None, lazy: bool = False) -> VideoInput:
        """Decode and preprocess one video (raises VideployError for a bad input).

        ``lazy`` (AdaFocusV3, one view, a file): only the glance frames are made ready; the focus
        frames wait in ``VideoInput.lazy`` until a local step asks for them."""
        if isinstance(video, VideoInput):
            return video
        clips, crops = self.views(views)
        defer = None
        if lazy and self.adaptive is not None and (clips, crops) == (1, 1) and not isinstance(video, np.ndarray):
            glance = set(self.manifest.early_exit.glance_indices)
            defer = [p for p in range(self.manifest.early_exit.num_segments) if p not in glance]
        return load_video(video, self.manifest.preprocessing, num_clips=clips, num_crops=crops, defer=defer, prefetch=self._prefetch)

    # --- prediction -------------------------------------------------------------------------------
    def predict(self, video: VideoSource | VideoInput, top_k: int = 5, views: ViewSpec = None, thresholds: Sequence[float] | None = None) -> Prediction:
        """Predict one video (a path, a (T, H, W, 3) uint8 RGB array, or a prepared VideoInput)."""
        return self.predict_batch([video], top_k=top_k, views=views, thresholds=thresholds)[0]

    def predict_batch(
        self,
        videos: Iterable[VideoSource | VideoInput],
        top_k: int = 5,
        views: ViewSpec = None,
        thresholds: Sequence[float] | None = None,
        batch_size: int | None = None,
        continuous: bool = True,
    ) -> list[Prediction]:
        """Predict many videos; results in input order.

        ``batch_size`` (default: the bundle's maximum) bounds each backend call. ``continuous``
        (AdaFocusV3; the default) keeps the local-encoder batch full by admitting new videos as
        others exit; ``False`` runs each batch to its end (static). Results are identical either
        way; other families ignore it.
        """
        return list(self.iter_predict(videos, top_k, views, thresholds, batch_size, continuous))

    def iter_predict(
        self,
        videos: Iterable[VideoSource | VideoInput],
        top_k: int = 5,
        views: ViewSpec = None,
        thresholds: Sequence[float] | None = None,
        batch_size: int | None = None,
        continuous: bool = True,
        on_error: Callable[[str, VideployError], None] | None = None,
        keep_display: bool = True,
    ) -> Iterator[Prediction]:
        """Like :meth:`predict_batch`, yielding each prediction (in input order) as soon as it is ready.

        Videos are decoded as the batches need them, ``decode_workers`` threads ahead (a long list
        never piles up frames). ``on_error(video, error)``: a video that cannot be decoded is
        reported there and skipped (without it, the error is raised). ``keep_display=False`` drops
        the display crops (used only for drawing) right after decoding.
        """
        if top_k < 1:
            raise VideployError(f"top_k must be >= 1, got {top_k}")
        bs = self.bundle.batch_size(batch_size, self.backend.dynamic_batch)
        if self.adaptive is None and thresholds is not None:
            raise VideployError(f"exit thresholds apply to adaptive (AdaFocusV3) bundles; {self.manifest.model_name!r} is a {self.manifest.family} bundle")
        if self.adaptive is not None:
            prepared = self.prepare_stream(videos, views, on_error, keep_display, lazy=self.lazy_frames)
            yield from self._predict_adaptive(prepared, top_k, thresholds, bs, continuous, keep_display)
        else:
            yield from self._predict_static(self.prepare_stream(videos, views, on_error, keep_display), top_k, bs)

    def prepare_stream(
        self,
        videos: Iterable[VideoSource | VideoInput],
        views: ViewSpec = None,
        on_error: Callable[[str, VideployError], None] | None = None,
        keep_display: bool = True,
        lazy: bool = False,
    ) -> Iterator[tuple[VideoInput, float, float]]:
        """(input, decode start time, decode seconds) per video, in order, decoded ahead of the consumer
        by ``decode_workers`` threads (:mod:`videploy.runtime.pipeline`; 0: in the consumer's thread).
        ``lazy``: see :meth:`prepare` (the decode seconds are then the glance frames' only)."""
        self.views(views)  # a bad view spec fails here, before any decoding

        def decode(v: VideoSource | VideoInput) -> tuple[VideoInput, float, float]:
            t0 = time.perf_counter()
            vi = self.prepare(v, views, lazy=lazy)
            if not keep_display and vi.display_frames is not None:
                vi = dataclasses.replace(vi, display_frames=None)
            return vi, t0, (0.0 if isinstance(v, VideoInput) else time.perf_counter() - t0)

        for v, result in ordered_prefetch(videos, decode, self.decode_workers):
            if isinstance(result, VideployError):
                if on_error is None:
                    raise result
                on_error(v.source if isinstance(v, VideoInput) else str(v), result)
                continue
            if isinstance(result, BaseException):
                raise result
            yield result

    def _predict_static(self, prepared: Iterable[tuple[VideoInput, float, float]], top_k: int, bs: int) -> Iterator[Prediction]:
        spec = self.manifest.graph("main").input("video")
        group: list[tuple[VideoInput, float, float]] = []

        def flush() -> list[Prediction]:
            views = np.concatenate([vi.views for vi, _, _ in group]).astype(spec.dtype, copy=False)
            logits = np.concatenate([self.logits(views[i : i + bs]) for i in range(0, views.shape[0], bs)])
            probs = _softmax(logits.astype(np.float64))
            now = time.perf_counter()
            out, start = [], 0
            for vi, t0, decode in group:
                nv = vi.views.shape[0]
                p = probs[start : start + nv].mean(axis=0)
                start += nv
                out.append(self._prediction(vi, p, gflops=self._gflops_per_view() * nv, top_k=top_k, timing=Timing(decode, now - t0)))
            group.clear()
            return out

        rows = 0
        for item in prepared:
            group.append(item)
            rows += item[0].views.shape[0]
            if rows >= bs:
                yield from flush()
                rows = 0
        if group:
            yield from flush()

    def logits(self, views: np.ndarray) -> np.ndarray:
        """Single-graph bundles: the ``main`` graph's logits for a batch of views (batch, T, 3, H, W)."""
        return np.asarray(self.backend.run("main", {"video": views}, fetch=("logits",))["logits"])

    def _gflops_per_view(self) -> float:
        m = self.manifest
        return m.gflops_per_view if m.gflops_per_view > 0 else sum(g.gflops for g in m.graphs)

    def _predict_adaptive(
        self,
        prepared: Iterable[tuple[VideoInput, float, float]],
        top_k: int,
        thresholds: Sequence[float] | None,
        bs: int,
        continuous: bool,
        keep_display: bool = True,
    ) -> Iterator[Prediction]:
        metas: list[tuple[VideoInput, float, float]] = []

        def frames() -> Iterable[Any]:
            for vi, t0, decode in prepared:
                # keep the metadata, not the tensor, so a long stream does not pile up frames
                metas.append((dataclasses.replace(vi, views=np.empty((0,), dtype=np.float32)), t0, decode))
                yield vi.lazy if vi.lazy is not None else vi.views[0]

        try:
            for i, oc in enumerate(self.adaptive.iter_run(frames(), thresholds=thresholds, batch_size=bs, continuous=continuous)):
                vi, t0, decode = metas[i]
                metas[i] = None  # type: ignore[call-overload]  # done: drop the metadata too
                if vi.lazy is not None:
                    display = vi.lazy.display() if keep_display else None
                    vi.lazy.close()
                    vi = dataclasses.replace(vi, lazy=None, display_frames=display)
                yield self.adaptive_prediction(vi, oc, top_k, Timing(decode, time.perf_counter() - t0))
        finally:
            for meta in metas:  # stopped early or failed: release the frames still held
                if meta is not None and meta[0].lazy is not None:
                    meta[0].lazy.close()

    def adaptive_prediction(self, vi: VideoInput, oc: AdaptiveOutcome, top_k: int, timing: "Timing | None" = None) -> Prediction:
        """The :class:`Prediction` for one AdaFocusV3 outcome of video ``vi``."""
        ee = self.manifest.early_exit
        sampled = vi.frame_indices[0]
        cubes = tuple(dataclasses.replace(c, frames=tuple(int(sampled[i]) for i in c.sampled)) for c in oc.cubes)
        trace = AdaptiveTrace(
            exit_step=oc.exit,
            num_steps=ee.num_steps,
            cubes=cubes,
            entropies=oc.entropies,
            thresholds=oc.thresholds,
            full_gflops=float(ee.exit_gflops[-1]),
        )
        p = _softmax(oc.logits.astype(np.float64)[None])[0]
        return self._prediction(vi, p, gflops=oc.gflops, top_k=top_k, adaptive=trace, timing=timing)

    def _prediction(
        self, vi: VideoInput, probs: np.ndarray, gflops: float, top_k: int, adaptive: AdaptiveTrace | None = None, timing: "Timing | None" = None
    ) -> Prediction:
        k = min(top_k, probs.shape[0])
        order = np.argsort(-probs, kind="stable")[:k]
        top = tuple(
            ClassScore(index=int(i), probability=float(probs[i]), label=self.labels[int(i)] if self.labels else None) for i in order
        )
        notes = list(vi.notes)
        if self.random_weights:
            notes.insert(0, "the bundle has random weights (exported without a checkpoint): these predictions mean nothing")
        if adaptive is not None and adaptive.thresholds and all(t == never_stops(self.manifest.early_exit.criterion) for t in adaptive.thresholds):
            notes.append("no exit thresholds stop any video (none given, none in the bundle, or all set to never stop): every video ran all focus steps")
        return Prediction(
            source=vi.source,
            model_name=self.manifest.model_name,
            family=self.manifest.family,
            top=top,
            probabilities=probs.astype(np.float32),
            views=(vi.num_clips, vi.num_crops),
            frame_indices=vi.frame_indices,
            num_frames=vi.num_frames,
            gflops=float(gflops),
            random_weights=self.random_weights,
            notes=tuple(notes),
            adaptive=adaptive,
            display_frames=vi.display_frames,
            timing=timing,
        )


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
