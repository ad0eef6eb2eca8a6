"""Benchmark one bundle: graph latency per backend and batch size, decoding, and AdaFocusV3's schedules.

    from videploy.bench import bench_bundle
    report = bench_bundle("bundle/", backends=("onnxruntime", "torch"), batches=(1, 4), repeat=10)
    print(report.to_dict()["graphs"][0]["speedup"])

What is measured, in order:

1. **decode + preprocess**: :func:`videploy.runtime.video.load_video` on the video file, per video
   (OpenCV decode, sampling, resize, crop, normalise) -- the part no backend speeds up.
2. **graph latency**: one ``backend.run(role, inputs)`` per call, for every graph role and batch
   size, on every backend that can run here, interleaved across backends (A B A B ...). Inputs are
   real decoded frames (:mod:`videploy.bench.inputs`), the same host arrays for every backend;
   outputs are fetched to the host, as the runtime's callers get them. Ratios are relative to the
   PyTorch reference when it ran, else to the first backend.
3. **AdaFocusV3 only** (:mod:`videploy.bench.adaptive`), on the first backend that runs: early
   exit vs all steps, and static vs continuous batching, on a stream of clips.

Nothing here imports torch: the PyTorch reference backend is opened only when asked for, and
skipped with its reason when torch is missing.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from videploy.bench import inputs as bench_inputs
from videploy.bench.adaptive import Comparison, bench_batching, bench_early_exit, sweep_budgets
from videploy.bench.backends import (
    BackendSlot,
    close_all,
    open_backends,
    reference_of,
)
from videploy.bench.machine import machine_info, peak_rss_mb, reset_peak_rss
from videploy.bench.pipeline import EndToEnd, bench_end_to_end
from videploy.bench.peak import Peak, matmul_peak
from videploy.bench.timing import (
    Case,
    Clock,
    Timing,
    measure_interleaved,
    speedup,
)
from videploy.bundle.bundle import Bundle, BundleLike
from videploy.calibration.fit_on_videos import ExitThresholds, resolve_exit_thresholds
from videploy.bundle.manifest import Manifest
from videploy.errors import VideployError
from videploy.runtime.adaptive import AdaptiveRunner
from videploy.runtime.backends import BackendSpec
from videploy.jsonsafe import encode_float
from videploy.runtime.recognizer import Recognizer
from videploy.runtime.samples import sample_video_path
from videploy.runtime.video import load_video

E2E_CLIP_FRAMES = 96  # frames per end-to-end clip file (benchmarks/bench_end_to_end.py's default too)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class GraphResult:
    """One graph role at one batch size, timed on every backend that ran."""

    role: str
    batch: int
    gflops_per_row: float
    timings: dict[str, Timing]  # backend name -> timing
    reference: str

    def speedup(self, name: str) -> float:
        """How many times faster backend ``name`` ran this graph than the reference."""
        return speedup(self.timings[self.reference], self.timings[name])

    def to_dict(self, peak_gflops_per_s: float | None = None, views_per_video: int = 1) -> dict[str, Any]:
        backends = {}
        for n, t in self.timings.items():
            d = t.to_dict()
            rows_per_s = self.batch / t.stats.median
            achieved = 2.0 * self.gflops_per_row * rows_per_s  # GMACs -> floating-point operations
            d["views_per_s"] = rows_per_s
            d["videos_per_s"] = rows_per_s / views_per_video if self.role == "main" else None
            d["achieved_gflops_per_s"] = achieved
            d["fraction_of_matmul_peak"] = achieved / peak_gflops_per_s if peak_gflops_per_s else None
            backends[n] = d
        return {
            "role": self.role,
            "batch": self.batch,
            "gflops_per_row": self.gflops_per_row,
            "reference": self.reference,
            "backends": backends,
            "speedup": {n: encode_float(self.speedup(n)) for n in self.timings},
        }


@dataclass
class BenchReport:
    """Everything one benchmark run measured, with the machine and the settings it ran with."""

    bundle: str
    manifest: Manifest
    command: str | None
    machine: dict[str, Any]
    settings: dict[str, Any]
    backends: list[dict[str, Any]]
    reference: str
    decode: Timing
    decode_source: str
    graphs: list[GraphResult]
    thresholds: ExitThresholds | None = None
    early_exit: Comparison | None = None
    batching: Comparison | None = None
    adaptive_backend: str | None = None
    notes: list[str] = field(default_factory=list)
    peak: Peak | None = None
    budget_sweep: list[dict[str, Any]] = field(default_factory=list)
    timing_peak_rss_mb: float | None = None
    end_to_end: EndToEnd | None = None
    end_to_end_backend: str | None = None
    whole_model: list[GraphResult] = field(default_factory=list)  # AdaFocusV3: the chain, every step, per batch

    @property
    def adaptive(self) -> bool:
        return self.early_exit is not None

    def where_time_goes(self) -> list[dict[str, Any]]:
        """Per video: decode + preprocess vs running the graphs, on each backend."""
        decode = self.decode.stats.median
        out = []
        ee = self.manifest.early_exit
        if self.adaptive:
            t = self.early_exit.timings["early exit"]
            per_video = t.stats.median / t.items
            bs = self.settings["adaptive_batch"]
            out.append(_share(self.adaptive_backend, f"AdaFocusV3 run with early exit, batch {bs}", bs, decode, per_video))
        elif ee is not None:
            # no stream benchmark: a video that runs every step costs glance + policy + num_steps local calls
            per_call = {(g.role, g.batch): g for g in self.graphs}
            calls = {"glance": 1, "policy": 1, "local": ee.num_steps}
            for b in self.settings["batches"]:
                for name in self.graphs[0].timings:
                    run = sum(n * per_call[(role, b)].timings[name].stats.median for role, n in calls.items()) / b
                    out.append(_share(name, f"all {ee.num_steps} steps from graph latencies, batch {b}", b, decode, run))
        else:
            for g in self.graphs:
                for name, t in g.timings.items():
                    out.append(_share(name, f"graph '{g.role}', batch {g.batch}", g.batch, decode, t.stats.median / g.batch))
        return out

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        d: dict[str, Any] = {
            "bundle": self.bundle,
            "model": m.model_name,
            "family": m.family,
            "precision": m.precision,
            "random_weights": m.weights is None,
            "command": self.command,
            "machine": self.machine,
            "settings": self.settings,
            "backends": self.backends,
            "reference": self.reference,
            "decode": {"source": self.decode_source, "frames": m.preprocessing.num_frames, **self.decode.to_dict()},
            "matmul_peak": None if self.peak is None else self.peak.to_dict(),
            "timing_peak_rss_mb": self.timing_peak_rss_mb,
            "graphs": [g.to_dict(self.peak.gflops_per_s if self.peak else None) for g in self.graphs],
            "whole_model": [g.to_dict(self.peak.gflops_per_s if self.peak else None) for g in self.whole_model],
            "where_time_goes": self.where_time_goes(),
            "end_to_end": None if self.end_to_end is None else {"backend": self.end_to_end_backend, **self.end_to_end.to_dict()},
            "adaptive": None,
            "notes": list(self.notes),
        }
        if self.adaptive:
            ee = m.early_exit
            d["adaptive"] = {
                "backend": self.adaptive_backend,
                "videos": self.settings["videos"],
                "batch_size": self.settings["adaptive_batch"],
                "exit_gflops": list(ee.exit_gflops),
                "thresholds": self.thresholds.to_dict(),
                "early_exit": self.early_exit.to_dict(),
                "batching": self.batching.to_dict(),
                "budget_sweep": list(self.budget_sweep),
            }
        return d


def _share(backend: str | None, what: str, batch: int, decode: float, run: float) -> dict[str, Any]:
    total = decode + run
    return {
        "backend": backend,
        "what": what,
        "batch": batch,
        "decode_s_per_video": decode,
        "run_s_per_video": run,
        "decode_fraction": decode / total if total > 0 else 0.0,
    }


def valid_batches(manifest: Manifest, batches: Sequence[int]) -> tuple[list[int], list[str]]:
    """The requested batch sizes the bundle accepts, and notes for those it does not."""
    rng = manifest.batch
    ok, notes = [], []
    for b in dict.fromkeys(int(x) for x in batches):
        if rng.min <= b <= rng.max:
            ok.append(b)
        else:
            notes.append(f"batch {b} skipped: the bundle accepts batches {rng.min} to {rng.max}")
    if not ok:
        raise VideployError(
            f"none of the batch sizes {list(batches)} fits the bundle, which accepts {rng.min} to {rng.max}; "
            f"pass --batch within that range (e.g. --batch {rng.min},{rng.max})"
        )
    return ok, notes


def bench_bundle(
    bundle: BundleLike,
    backends: Sequence[str] = ("onnxruntime", "torch", "tensorrt"),
    batches: Sequence[int] = (1, 4),
    repeat: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    device: str = "cpu",
    precision: str | None = None,
    checkpoint: str | Path | None = None,
    videos: Sequence[str | Path] | None = None,
    num_videos: int = 8,
    thresholds: Sequence[float] | None = None,
    budget: float | None = None,
    adaptive_batch: int | None = None,
    adaptive: bool = True,
    budget_sweep: Sequence[float] = (),
    end_to_end: bool = True,
    decode_workers: int = 1,
    probe_peak: bool = True,
    factories: Mapping[str, BackendSpec] | None = None,
    clock: Clock = time.perf_counter,
    command: str | None = None,
    progress: Progress | None = None,
) -> BenchReport:
    """Benchmark ``bundle_dir``; see the module docstring. Backends that cannot run are skipped
    (listed with their reason in ``report.backends``). ``videos``: files to cut the input stream
    from (default: the runtime's sample video). ``adaptive_batch``: AdaFocusV3's batch size for the
    stream (default: the largest of ``batches``); ``adaptive=False`` skips the stream benchmarks
    (graph latency only). ``end_to_end``: also time decode, model and both pipelined on
    ``num_videos`` distinct clip files cut from ``videos`` (:func:`~videploy.bench.inputs.write_clip_files`;
    :mod:`videploy.bench.pipeline`), with
    ``decode_workers`` threads decoding ahead. ``factories``: see
    :func:`videploy.bench.backends.open_backends`. ``command``: recorded in the report as given."""
    say = progress or (lambda msg: None)
    bundle = Bundle.of(bundle)
    manifest = bundle.manifest
    ok_batches, notes = valid_batches(manifest, batches)
    files = [Path(v) for v in videos] if videos else [sample_video_path()]
    pre = manifest.preprocessing
    ee = manifest.early_exit
    if ee is None and (thresholds is not None or budget is not None):
        raise VideployError(f"--thresholds / --budget apply to AdaFocusV3 bundles; {manifest.model_name!r} is a {manifest.family} bundle")
    if ee is not None and adaptive_batch is not None and not manifest.batch.min <= adaptive_batch <= manifest.batch.max:
        raise VideployError(f"AdaFocusV3 stream batch {adaptive_batch} is outside the bundle's batch range {manifest.batch.min} to {manifest.batch.max}")

    say(f"decoding a stream of {num_videos} clips from {', '.join(f.name for f in files)}")
    stream = bench_inputs.clip_stream(files, num_videos, pre)

    say("timing decode + preprocess")
    decode = measure_interleaved([Case("decode", lambda: load_video(files[0], pre), items=1)], repeat=repeat, warmup=warmup, clock=clock)["decode"]

    say(f"opening backends: {', '.join(backends)}")
    options = {"torch": {"checkpoint": checkpoint}} if checkpoint is not None else None
    slots = open_backends(backends, bundle, device=device, threads=threads, precision=precision, options=options, factories=factories)
    try:
        running = [s for s in slots if s.ok]
        reference = reference_of(slots)
        peak = None
        if probe_peak:
            say("measuring this machine's fp32 matrix-multiply peak (onnxruntime, same threads)")
            peak = matmul_peak(threads)
        reset_peak_rss()
        graphs = _bench_graphs(manifest, stream, running, ok_batches, reference, repeat, warmup, clock, say)
        whole = _bench_whole_model(manifest, stream, running, ok_batches, reference, repeat, warmup, clock, say) if ee is not None else []
        timing_peak = peak_rss_mb()

        settings: dict[str, Any] = {
            "backends": list(backends),
            "batches": ok_batches,
            "repeat": repeat,
            "warmup": warmup,
            "threads": threads,
            "device": device,
            "precision": precision,
            "videos": num_videos,
            "video_files": [str(f) for f in files],
            "interleaved": True,
            "timer": "time.perf_counter" if clock is time.perf_counter else getattr(clock, "__name__", repr(clock)),
        }
        report = BenchReport(
            bundle=str(bundle.root),
            manifest=manifest,
            command=command,
            machine=machine_info(),
            settings=settings,
            backends=[s.to_dict() for s in slots],
            reference=reference,
            decode=decode,
            decode_source=str(files[0]),
            graphs=graphs,
            whole_model=whole,
            notes=notes,
            peak=peak,
            timing_peak_rss_mb=timing_peak,
        )
        if end_to_end:
            bs = adaptive_batch if (ee is not None and adaptive_batch is not None) else max(ok_batches)
            say(f"end to end on {running[0].name}: decode, model, and both pipelined ({num_videos} distinct clip files, batch {bs})")
            with tempfile.TemporaryDirectory(prefix="videploy-bench-clips-") as tmp:
                # distinct files: the same few files cycled gave AdaFocusV3 a handful of distinct
                # exits, too few to fit "equal exits" thresholds (it ran every step)
                clips = bench_inputs.write_clip_files(files, num_videos, E2E_CLIP_FRAMES, Path(tmp))
                report.end_to_end = bench_end_to_end(running[0].backend, clips, bs, repeat, warmup, clock, thresholds=thresholds, decode_workers=decode_workers)
            report.end_to_end_backend = running[0].name
            settings["decode_workers"] = decode_workers
        if ee is not None and adaptive:
            slot = running[0]
            bs = adaptive_batch if adaptive_batch is not None else max(ok_batches)
            settings["adaptive_batch"] = bs
            rec = Recognizer(bundle, backend=slot.backend)
            say(f"AdaFocusV3 on {slot.name}: choosing exit thresholds")
            eta = resolve_exit_thresholds(rec, stream, thresholds=thresholds, budget=budget, batch_size=bs, default="equal exits")
            say(f"AdaFocusV3 on {slot.name}: early exit vs all steps ({num_videos} videos, batch {bs})")
            report.early_exit = bench_early_exit(rec, stream, eta.values, bs, repeat, warmup, clock)
            say(f"AdaFocusV3 on {slot.name}: static vs continuous batching")
            report.batching = bench_batching(rec, stream, eta.values, bs, repeat, warmup, clock)
            if budget_sweep:
                say(f"AdaFocusV3 on {slot.name}: GFLOPs and time per video across exit budgets")
                report.budget_sweep = sweep_budgets(rec, stream, budget_sweep, bs, repeat, warmup, clock)
            report.thresholds = eta
            report.adaptive_backend = slot.name
            if eta.note:
                report.notes.append(f"{eta.note} (the {num_videos} benchmark clips)")
            if manifest.weights is None:
                report.notes.append("random weights: where videos exit (and so the early-exit savings) depends on the weights; use a real checkpoint for representative numbers")
        return report
    finally:
        close_all(slots)


def _bench_graphs(
    manifest: Manifest,
    stream: Sequence[Any],
    running: Sequence[BackendSlot],
    batches: Sequence[int],
    reference: str,
    repeat: int,
    warmup: int,
    clock: Clock,
    say: Progress,
) -> list[GraphResult]:
    bmax = max(batches)
    if manifest.early_exit is not None:
        full = bench_inputs.adaptive_inputs(stream, bmax, running[0].backend)
    else:
        full = {"main": bench_inputs.static_inputs(manifest, stream, bmax)}
    results = []
    for g in manifest.graphs:
        for b in batches:
            feed = bench_inputs.rows(full[g.role], b)
            say(f"timing graph '{g.role}' at batch {b} on {', '.join(s.name for s in running)}")
            cases = [Case(s.name, _runner(s, g.role, feed), items=b) for s in running]
            timings = measure_interleaved(cases, repeat=repeat, warmup=warmup, clock=clock)
            results.append(GraphResult(role=g.role, batch=b, gflops_per_row=g.gflops, timings=timings, reference=reference))
    return results


def _bench_whole_model(
    manifest: Manifest,
    stream: Sequence[Any],
    running: Sequence[BackendSlot],
    batches: Sequence[int],
    reference: str,
    repeat: int,
    warmup: int,
    clock: Clock,
    say: Progress,
) -> list[GraphResult]:
    """AdaFocusV3 as a whole: glance, policy and every local step through the one chain, every exit
    forced, on each backend (interleaved). A graph timed alone, between other backends' calls, runs
    colder than inside the chain, where a local step follows a local step; this is the number a
    video costs."""
    never = [-math.inf] * (manifest.early_exit.num_steps + 1)
    gflops = float(manifest.early_exit.exit_gflops[-1])
    runners = {s.name: AdaptiveRunner(s.backend) for s in running}
    out = []
    for b in batches:
        videos = [stream[i % len(stream)].views[0] for i in range(b)]
        say(f"timing the whole model (every step) at batch {b} on {', '.join(runners)}")
        cases = [Case(n, (lambda r=r: r.run(videos, thresholds=never, batch_size=b)), items=b) for n, r in runners.items()]
        timings = measure_interleaved(cases, repeat=repeat, warmup=warmup, clock=clock)
        out.append(GraphResult(role="whole model", batch=b, gflops_per_row=gflops, timings=timings, reference=reference))
    return out


def _runner(slot: BackendSlot, role: str, feed: dict[str, Any]) -> Callable[[], Any]:
    backend = slot.backend

    def call() -> Any:
        return backend.run(role, feed)

    return call
