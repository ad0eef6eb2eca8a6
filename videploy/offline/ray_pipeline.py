"""The Ray Data stages: decode tasks on CPUs, then a pool of inference actors, streaming.

    paths ─► from_items ─► map_batches(decode_batch)       CPU tasks: OpenCV decode + preprocessing
                        ─► map_batches(InferenceActor)     actor pool: each loads the bundle once
                        ─► driver: Parquet shards (output.ShardWriter)

Both stages run the torch-free runtime unchanged, so a row is what ``videploy predict`` answers:
:func:`decode_batch` calls :func:`videploy.runtime.video.load_video` (what ``Recognizer.prepare``
does) and the actor calls ``Recognizer.predict_batch`` on the decoded ``VideoInput``s.

Decode and inference overlap and scale independently: decode tasks are as many as free CPUs and
object-store back-pressure allow; the actor pool has a fixed (or MIN-MAX autoscaled) size, each
actor holding its CPUs and, on GPU backends, its GPU. Ray Data fuses two map stages into one when
their resource requests are equal (then every actor would decode its own videos and the decoding
CPUs would sit idle); the decode stage reserves the memory its decoded batch needs, which both
makes Ray schedule it by memory and keeps the stages apart.

Bounded memory: Ray Data streams blocks through the stages with back-pressure, so decoded frames
live in the object store only between their decode task and their actor call. The display crops
that ``--visualize`` draws are never kept.

Damaged videos: a decode failure becomes a row with ``error`` set (the :class:`VideployError`
message) and never fails the job. An unexpected exception while decoding one video is caught too
(logged with its traceback, the row says it is a bug to report): a job over millions of clips must
not die, then die again on every resume, because of one file. At inference, a batch the backend
refuses is retried video by video: the videos refused alone get error rows; if every one is
refused, the problem is the bundle or the backend, not a video, and the job fails (the videos stay
pending for the re-run).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import time
from typing import Any, Sequence

import numpy as np

from videploy.bundle.manifest import Manifest, Preprocessing
from videploy.errors import VideployError
from videploy.offline.dataset import VideoItem
from videploy.offline.options import PredictOptions, ScaleOptions
from videploy.offline.output import error_row, prediction_row, rows_to_table

log = logging.getLogger(__name__)

# Beyond this many input blocks, blocks grow instead: the driver keeps per-block metadata.
MAX_INPUT_BLOCKS = 10_000
# Headroom a decode task reserves beyond its decoded views: one source frame up to 8K UHD
# (7680 x 4320 x 3 bytes, ~100 MB) plus its resized copy.
_DECODE_FRAME_HEADROOM = 256 * 1024**2
_NO_VIEWS = np.zeros((0, 1, 1, 1, 1), dtype=np.float32)


def decode_batch(batch: dict[str, np.ndarray], *, preprocessing: Preprocessing, num_clips: int, num_crops: int, quiet: bool = True) -> dict[str, np.ndarray]:
    """Decode stage: paths -> views (object column of (views, T, 3, H, W) float32), pickled metadata, error."""
    from videploy.runtime.video import load_video, quiet_decoder_logs

    if quiet:
        quiet_decoder_logs()
    paths = [str(p) for p in batch["path"]]
    n = len(paths)
    views = np.empty(n, dtype=object)
    meta = np.empty(n, dtype=object)
    errors = np.full(n, "", dtype=object)  # "" = decoded (Ray turns all-None columns into NaN floats)
    seconds = np.zeros(n, dtype=np.float64)
    for i, path in enumerate(paths):
        t0 = time.perf_counter()
        try:
            vi = load_video(path, preprocessing, num_clips=num_clips, num_crops=num_crops)
        except VideployError as exc:
            views[i], meta[i], errors[i] = _NO_VIEWS, b"", str(exc)
        except Exception as exc:  # one file must not fail a job over millions (see module docstring)
            log.exception("unexpected error while decoding %s", path)
            views[i], meta[i] = _NO_VIEWS, b""
            errors[i] = f"unexpected {type(exc).__name__} while decoding {path!r}: {exc} (a bug in videploy; please report it with the file)"
        else:
            views[i] = vi.views
            # the rest of VideoInput travels as a small pickle (our own processes only): new fields come along
            meta[i] = pickle.dumps(dataclasses.replace(vi, views=_NO_VIEWS, display_frames=None))
        seconds[i] = time.perf_counter() - t0
    return {"path": np.asarray(paths, dtype=object), "label": np.asarray([str(x) for x in batch["label"]], dtype=object), "error": errors, "views": views, "meta": meta, "decode_s": seconds}


class InferenceActor:
    """Inference stage: one per actor, the bundle loaded once; decoded batch -> result rows (a pyarrow Table)."""

    def __init__(self, bundle: str, options: PredictOptions, backend_options: dict[str, Any]):
        from videploy.runtime import load

        self.options = options
        self.rec = load(bundle, backend=options.backend, device=options.resolved_device, labels=options.labels, precision=options.precision, **backend_options)

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        n = len(batch["path"])
        rows: list[dict[str, Any] | None] = [None] * n
        inputs, where = [], []
        for i in range(n):
            path, label = str(batch["path"][i]), _text(batch["label"][i])
            if _text(batch["error"][i]):
                rows[i] = error_row(path, label, str(batch["error"][i]), float(batch["decode_s"][i]))
            else:
                vi = pickle.loads(batch["meta"][i])
                inputs.append(dataclasses.replace(vi, views=np.asarray(batch["views"][i])))
                where.append(i)
        t0 = time.perf_counter()
        results = self._predict(inputs)
        share = (time.perf_counter() - t0) / max(len(inputs), 1)
        finished_at = time.time()
        for i, res in zip(where, results):
            path, label, decode_s = str(batch["path"][i]), _text(batch["label"][i]), float(batch["decode_s"][i])
            rows[i] = error_row(path, label, res, decode_s) if isinstance(res, str) else prediction_row(res, label, decode_s, share, path=path)
        for row in rows:
            row["finished_at"] = finished_at
        return rows_to_table(rows)

    def _predict(self, inputs: list[Any]) -> list[Any]:
        """Predictions, or an error message for a video the backend refuses on its own.

        When the batch fails, each video is tried alone; if every one fails, the error is not about
        a video (a bundle or backend problem) and fails the job rather than marking the videos done.
        """
        if not inputs:
            return []
        o = self.options
        kw = dict(top_k=o.top_k, thresholds=o.thresholds, batch_size=o.batch_size, continuous=o.continuous is not False)
        try:
            return self.rec.predict_batch(inputs, **kw)
        except VideployError as exc:
            first = exc
        out: list[Any] = []
        for vi in inputs:
            try:
                out.append(self.rec.predict_batch([vi], **kw)[0])
            except VideployError as exc:
                out.append(str(exc))
        if all(isinstance(r, str) for r in out):
            raise first
        return out


def build_dataset(
    items: Sequence[VideoItem],
    bundle: str,
    manifest: Manifest,
    views: tuple[int, int],
    options: PredictOptions,
    scale: ScaleOptions,
    quiet: bool = True,
) -> Any:
    """The lazy Ray Dataset of result rows for ``items`` (nothing runs until it is iterated)."""
    from videploy.optional import require

    rd = require("ray.data", "predict-dataset (distributed batch inference)")
    decode_batch_size = scale.decode_batch
    blocks = max(1, min(math.ceil(len(items) / decode_batch_size), MAX_INPUT_BLOCKS))
    # "" for "no label": a column of only None would come back from Ray as NaN floats
    ds = rd.from_items([{"path": it.path, "label": it.label or ""} for it in items], override_num_blocks=blocks)
    pre = manifest.preprocessing
    view_bytes = views[0] * views[1] * pre.num_frames * 3 * pre.crop_size[0] * pre.crop_size[1] * 4
    ds = ds.map_batches(
        decode_batch,
        batch_size=decode_batch_size,
        batch_format="numpy",
        fn_kwargs=dict(preprocessing=pre, num_clips=views[0], num_crops=views[1], quiet=quiet),
        num_cpus=scale.decode_cpus,
        memory=decode_batch_size * view_bytes * 2 + _DECODE_FRAME_HEADROOM,
    )
    gpus = scale.gpus_per_actor if scale.gpus_per_actor is not None else (1.0 if options.uses_gpu else 0.0)
    ds = ds.map_batches(
        InferenceActor,
        batch_size=scale.inference_batch or manifest.batch.max,
        batch_format="numpy",
        fn_constructor_kwargs=dict(bundle=bundle, options=options, backend_options=backend_options(options, scale)),
        compute=_actor_pool(rd, actor_count(scale, gpus)),
        num_cpus=scale.cpus_per_actor,
        num_gpus=gpus,
    )
    return ds


def check_resources(scale: ScaleOptions, cpus: float, strict: bool) -> None:
    """Refuse (``strict``: a local instance, whose size is known) or warn about a pool that leaves no CPU to decode.

    Ray Data cannot start a decode task while the actors hold every CPU: the job would wait forever.
    """
    actors = scale.actors if scale.actors is not None else 1
    least = actors[0] if isinstance(actors, tuple) else actors
    need = least * scale.cpus_per_actor + scale.decode_cpus
    if need > cpus + 1e-9:
        message = (
            f"{least} inference actor(s) x {scale.cpus_per_actor:g} CPU + one decode task x {scale.decode_cpus:g} CPU need {need:g} CPUs, "
            f"but the Ray cluster has {cpus:g}; use fractions (e.g. --cpus-per-actor 0.5 --decode-cpus 0.5), fewer --actors, or more CPUs"
        )
        if strict:
            raise VideployError(message)
        log.warning("%s (continuing: an autoscaling cluster may add nodes)", message)


def backend_options(options: PredictOptions, scale: ScaleOptions) -> dict[str, Any]:
    """onnxruntime on the CPU gets as many threads as the actor holds CPUs, so actors do not oversubscribe."""
    if options.backend != "onnxruntime":
        return {}
    if options.threads is not None:
        return {"threads": options.threads}
    return {"threads": max(1, int(scale.cpus_per_actor))} if not options.uses_gpu else {}


def actor_count(scale: ScaleOptions, gpus_per_actor: float) -> int | tuple[int, int]:
    if scale.actors is not None:
        return scale.actors
    if gpus_per_actor > 0:
        import ray

        total = ray.cluster_resources().get("GPU", 0.0)
        if total < gpus_per_actor:
            raise VideployError(
                f"the backend runs on a GPU ({gpus_per_actor:g} per actor) but the Ray cluster has {total:g} GPU(s); "
                "run on a cluster with GPUs, or use --device cpu (onnxruntime)"
            )
        return max(1, int(total // gpus_per_actor))
    return 1


def _actor_pool(rd: Any, actors: int | tuple[int, int]) -> Any:
    if isinstance(actors, tuple):
        return rd.ActorPoolStrategy(min_size=actors[0], max_size=actors[1])
    return rd.ActorPoolStrategy(size=actors)


def _text(value: Any) -> str | None:
    """A text column's value, None for "" (see build_dataset)."""
    text = str(value) if value is not None else ""
    return text or None
