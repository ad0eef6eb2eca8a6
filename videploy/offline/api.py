"""``predict_dataset``: one call from a video collection to a Parquet table, on Ray Data."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from videploy.bundle.manifest import Manifest
from videploy.errors import VideployError
from videploy.offline.dataset import list_videos, pending
from videploy.offline.options import PredictOptions, ScaleOptions
from videploy.offline.output import ShardWriter
from videploy.offline.ray_pipeline import build_dataset, check_resources
from videploy.optional import require

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class Progress:
    """Where a run stands; passed to the ``progress`` callback after every result batch."""

    done: int  # rows received in this run
    errors: int  # of which with an error
    total: int  # videos this run predicts
    shards: int  # shards written so far in this run
    seconds: float  # since the pipeline started


@dataclass(frozen=True)
class RunSummary:
    listed: int  # videos named by the input
    skipped: int  # already in OUT from an earlier run
    written: int  # rows this run wrote
    errors: int  # of which with an error (damaged / unreadable videos)
    seconds: float  # pipeline wall time (from the Ray connection to the last shard)
    out: Path
    shards: tuple[Path, ...] = ()
    remaining: int = 0  # videos still without a row (a --limit run)
    first_row_s: float | None = None  # from the start to the first result: Ray's start-up, actors loading the bundle
    # throughput over the middle half of the rows (from their finished_at): start-up and tail left out
    steady_videos_per_second: float | None = None
    error_samples: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (path, error), the first few

    @property
    def videos_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0



def predict_dataset(
    bundle: str | os.PathLike,
    source: str | os.PathLike,
    out: str | os.PathLike,
    options: PredictOptions = PredictOptions(),
    scale: ScaleOptions = ScaleOptions(),
    progress: Callable[[Progress], None] | None = None,
    quiet_decoder: bool = True,
) -> RunSummary:
    """Predict every video of ``source`` (directory, glob, CSV) with ``bundle``; rows go to Parquet shards in ``out``.

    Runs on the Ray instance this process is connected to, else connects to ``scale.address``, else
    starts a local one (``scale.num_cpus`` CPUs) and shuts it down at the end. Videos already in
    ``out`` are skipped (resume). Raises :class:`VideployError` for a bad bundle, input or option;
    damaged videos become rows with an error.
    """
    if options.backend not in BACKENDS:
        raise VideployError(f"predict-dataset runs the {' or '.join(BACKENDS)} backend, not {options.backend!r}")
    scale.check()
    bundle_dir = os.path.abspath(bundle)
    manifest, views = check_request(bundle_dir, options)
    items = list_videos(source)
    info = run_info(bundle_dir, manifest, views, options)
    ray = require("ray", "predict-dataset (distributed batch inference)")
    require("ray.data", "predict-dataset (distributed batch inference)")
    if scale.address is None and not ray.is_initialized():  # a local instance: its size is known before it starts
        check_resources(scale, scale.num_cpus or os.cpu_count() or 1, strict=True)

    with ShardWriter(out, info, shard_rows=scale.shard_rows, shard_seconds=scale.shard_seconds) as writer:
        todo = pending(items, writer.done)
        skipped = len(items) - len(todo)
        if scale.limit is not None:
            todo = todo[: scale.limit]
        remaining = len(items) - skipped - len(todo)
        if not todo:
            return RunSummary(len(items), skipped, 0, 0, 0.0, Path(out), remaining=remaining)
        started = connect(scale)
        t0 = time.perf_counter()
        samples: list[tuple[str, str]] = []
        done = errors = 0
        first_row_s: float | None = None
        clock = _FinishClock()
        try:
            if not started or scale.address is not None:
                check_resources(scale, ray.cluster_resources().get("CPU", 0.0), strict=False)
            ds = build_dataset(todo, bundle_dir, manifest, views, options, scale, quiet=quiet_decoder)
            for table in _batches(ds, ray):
                if first_row_s is None:
                    first_row_s = time.perf_counter() - t0
                writer.add(table)
                clock.add(table.column("finished_at").to_numpy())
                done += table.num_rows
                err = table.column("error")
                errors += table.num_rows - err.null_count
                if len(samples) < 20 and err.null_count < table.num_rows:
                    for p, e in zip(table.column("path").to_pylist(), err.to_pylist()):
                        if e is not None and len(samples) < 20:
                            samples.append((p, e))
                if progress is not None:
                    progress(Progress(done, errors, len(todo), len(writer.shards_written), time.perf_counter() - t0))
            writer.flush()
            seconds = time.perf_counter() - t0  # before Ray's shutdown, which is not this run's work
        finally:
            if started:
                ray.shutdown()
        return RunSummary(
            listed=len(items),
            skipped=skipped,
            written=writer.rows_written,
            errors=writer.errors_written,
            seconds=seconds,
            out=Path(out),
            shards=tuple(writer.shards_written),
            remaining=remaining + len(todo) - writer.rows_written,
            error_samples=tuple(samples),
            first_row_s=first_row_s,
            steady_videos_per_second=clock.steady_rate(),
        )


class _FinishClock:
    """Steady throughput from the rows' ``finished_at``: the middle half of the rows over the time it took.

    Start-up (Ray, actors loading the bundle) and the tail (the last calls, fewer actors busy) are
    left out. Rows finish in groups, one per inference call, so it keeps one count per call time.
    """

    def __init__(self) -> None:
        self.calls: dict[float, int] = {}

    def add(self, finished_at: Any) -> None:
        times, counts = np.unique(np.asarray(finished_at, dtype=np.float64), return_counts=True)
        for t, c in zip(times.tolist(), counts.tolist()):
            self.calls[t] = self.calls.get(t, 0) + c

    def steady_rate(self) -> float | None:
        if len(self.calls) < 3:
            return None
        times = sorted(self.calls)
        cum = np.cumsum([self.calls[t] for t in times])
        lo = int(np.searchsorted(cum, 0.25 * cum[-1]))
        hi = int(np.searchsorted(cum, 0.75 * cum[-1]))
        if hi <= lo or times[hi] <= times[lo]:
            return None
        return float(cum[hi] - cum[lo]) / (times[hi] - times[lo])


def check_request(bundle_dir: str, options: PredictOptions) -> tuple[Manifest, tuple[int, int]]:
    """Validate the bundle and options on the driver, before any Ray work: (manifest, (clips, crops))."""
    from videploy.bundle.bundle import Bundle
    from videploy.runtime.adaptive import exit_thresholds
    from videploy.runtime.backends import backend_class
    from videploy.runtime.labels import read_labels
    from videploy.runtime.recognizer import parse_views

    if options.top_k < 1:
        raise VideployError(f"top-k must be >= 1, got {options.top_k}")
    # The runtime's own checks (views, thresholds, labels, batch, manifest and graphs) without loading
    # any graph: the driver may have no GPU, and the actors load the bundle anyway.
    bundle = Bundle.open(bundle_dir)
    m = bundle.manifest
    views = parse_views(m, options.views)
    if options.labels is not None:
        read_labels(Path(options.labels), m.num_classes)
    if m.early_exit is None:
        for flag, value in (("thresholds", options.thresholds), ("continuous", options.continuous)):
            if value is not None:
                raise VideployError(f"{flag} is for adaptive (AdaFocusV3) bundles; {m.model_name!r} is a {m.family} bundle")
    elif options.thresholds is not None:
        exit_thresholds(m.early_exit, options.thresholds, m.model_name)
    bundle.batch_size(options.batch_size, backend_class(options.backend).dynamic_batch)
    return m, views


def run_info(bundle_dir: str, manifest: Manifest, views: tuple[int, int], options: PredictOptions) -> dict[str, Any]:
    """What every shard records about the run (the resume check compares output.RESUME_KEYS)."""
    from videploy import __version__

    return {
        "bundle": bundle_dir,
        "model": manifest.model_name,
        "family": manifest.family,
        "backend": options.backend,
        "device": options.resolved_device,
        "precision": options.precision,
        "labels": os.path.abspath(options.labels) if options.labels else None,
        "top_k": options.top_k,
        "views": f"{views[0]}x{views[1]}",
        "thresholds": [float(t) for t in options.thresholds] if options.thresholds is not None else None,
        "videploy": __version__,
    }


def connect(scale: ScaleOptions) -> bool:
    """Connect to Ray unless already connected; True when this call started (and must stop) it."""
    ray = require("ray", "predict-dataset (distributed batch inference)")
    if ray.is_initialized():
        return False
    try:
        ray.init(address=scale.address, num_cpus=scale.num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise VideployError(f"cannot connect to the Ray cluster at {scale.address!r} ({exc}); check the address (ray status on the head node shows it)") from None
    return True


def _batches(ds: Any, ray: Any) -> Any:
    """Result tables as they come; a failure inside Ray that is a VideployError comes out as one."""
    try:
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
    except ray.exceptions.RayError as exc:
        cause = exc
        for _ in range(10):  # RayTaskError -> .cause / __cause__ chain, bounded
            if cause is None or isinstance(cause, VideployError):
                break
            cause = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(cause, VideployError):
            raise VideployError(f"an inference actor failed: {cause}") from exc
        raise
