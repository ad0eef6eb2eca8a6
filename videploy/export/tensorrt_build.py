"""TensorRT engines for a bundle: one per graph, with a batch profile from the manifest.

Split in two so that all decisions are testable without TensorRT or a GPU:

* :func:`plan_build` (pure): which ONNX file each graph is parsed from, the optimization profile of
  every input (``min/opt/max`` on the ``"batch"`` dimension from the manifest's batch range, the
  other dimensions fixed), network typing and builder flags for the TensorRT major version, engine
  and timing-cache file names; :func:`updated_manifest` (pure) records the result.
* :func:`build_engines`: imports TensorRT lazily, runs the plan, writes engines + timing cache into
  the bundle via :func:`videploy.bundle.updating_bundle` (atomic, like export).

Precision per TensorRT major version (why):

======  ======================================  ==============================================
        TensorRT 11 (strongly typed only)       TensorRT 10 (Jetson / JetPack 6)
======  ======================================  ==============================================
fp32    fp32 graph, strongly typed              fp32 graph, TF32 flag cleared (true fp32)
fp16    fp16 graph (``variants["fp16"]``, made   fp32 graph + ``BuilderFlag.FP16``
        here by :mod:`videploy.export.fp16`)
int8    Q/DQ graph ``variants["int8"]``          Q/DQ graph + ``BuilderFlag.INT8`` (explicit
        (calibration makes it)                   quantization; implicit calibration is deprecated)
======  ======================================  ==============================================

TensorRT 11 removed the FP16/INT8 builder flags and implicit calibration; its strongly typed
network takes precision from the graph's tensor types, hence the fp16 graph.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from videploy.bundle.bundle import Bundle, BundleLike
from videploy.bundle.manifest import PRECISIONS, Manifest, write_manifest
from videploy.bundle.writer import updating_bundle
from videploy.errors import VideployError
from videploy.optional import require
from videploy.runtime.compare import Tolerance, VerificationReport, compare_backends

log = logging.getLogger(__name__)

SUPPORTED_MAJORS = (10, 11)
TIMING_CACHE_FILE = "timing.cache"
ENGINE_FILE = "{role}.{precision}.engine"
FP16_GRAPH_FILE = "{role}.fp16.onnx"
INT8_HINT = (
    "an INT8 engine is built from a graph with explicit QuantizeLinear/DequantizeLinear nodes, recorded as "
    "variants['int8'] of every graph; this bundle has none. Run videploy's INT8 calibration on the bundle first "
    "(videploy.calibration quantizes each graph with calibration videos and records variants['int8']), then build "
    "again; or build --precision fp16 / fp32"
)


@dataclass(frozen=True)
class ProfileShape:
    """One input's optimization profile: the shapes TensorRT tunes for (opt) and accepts (min..max)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class GraphBuild:
    role: str
    onnx_file: str  # bundle-relative graph the ONNX parser reads
    convert_from: str | None  # fp32 graph to convert into onnx_file first (fp16 on TensorRT 11)
    engine_file: str
    profile: tuple[ProfileShape, ...]


@dataclass(frozen=True)
class BuildPlan:
    precision: str
    tensorrt_version: str
    major: int
    strongly_typed: bool
    set_flags: tuple[str, ...]  # trt.BuilderFlag names to set
    clear_flags: tuple[str, ...]  # ... and to clear
    workspace_bytes: int | None
    timing_cache_file: str  # bundle-relative, always written
    timing_cache_source: str | None  # an external cache to start from (and update), if given
    graphs: tuple[GraphBuild, ...]

    def describe(self) -> list[str]:
        """Human-readable lines (``videploy build --dry-run``)."""
        typing_ = "strongly typed network" if self.strongly_typed else "weakly typed network"
        flags = ", ".join([f"+{f}" for f in self.set_flags] + [f"-{f}" for f in self.clear_flags]) or "none"
        ws = f"{self.workspace_bytes / 2**30:g} GiB" if self.workspace_bytes else "TensorRT default (device memory)"
        lines = [
            f"TensorRT {self.tensorrt_version} (major {self.major}), precision {self.precision}: {typing_}; builder flags: {flags}",
            f"workspace: {ws}; timing cache: {self.timing_cache_file}" + (f" (seeded from {self.timing_cache_source})" if self.timing_cache_source else ""),
        ]
        for g in self.graphs:
            src = f"{g.onnx_file} (converted from {g.convert_from})" if g.convert_from else g.onnx_file
            lines.append(f"graph '{g.role}': {src} -> {g.engine_file}")
            for p in g.profile:
                lines.append(f"    {p.name}: min {list(p.min)} opt {list(p.opt)} max {list(p.max)}")
        return lines


def parse_major(version: str) -> int:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version).major
    except InvalidVersion:
        raise VideployError(f"cannot read the TensorRT version {version!r}") from None


def plan_build(
    manifest: Manifest,
    precision: str,
    tensorrt_version: str,
    workspace_gb: float | None = None,
    timing_cache: str | Path | None = None,
) -> BuildPlan:
    """Decide everything :func:`build_engines` will do (pure: no TensorRT, no file access)."""
    if precision not in PRECISIONS:
        raise VideployError(f"precision {precision!r} is not one of {PRECISIONS}")
    major = parse_major(tensorrt_version)
    if major not in SUPPORTED_MAJORS:
        raise VideployError(f"TensorRT {tensorrt_version} is not supported; videploy builds with TensorRT 10.x or 11.x")
    if workspace_gb is not None and workspace_gb <= 0:
        raise VideployError(f"--workspace-gb must be positive, got {workspace_gb}")
    batch = manifest.batch
    graphs = []
    for g in manifest.graphs:
        convert_from = None
        if precision == "int8":
            onnx_file = g.variants.get("int8")
            if onnx_file is None:
                raise VideployError(f"cannot build an int8 engine for graph '{g.role}' of {manifest.model_name!r}: {INT8_HINT}")
        elif precision == "fp16" and major >= 11:
            onnx_file = g.variants.get("fp16")
            if onnx_file is None:
                onnx_file = FP16_GRAPH_FILE.format(role=g.role)
                convert_from = g.file
        else:
            onnx_file = g.file
        profile = []
        for t in g.inputs:
            dims = list(t.shape)
            if not dims or dims[0] != "batch":
                raise VideployError(f"input {t.name!r} of graph '{g.role}' has shape {dims}; dimension 0 must be the symbolic 'batch'")
            rest = dims[1:]
            bad = [d for d in rest if not isinstance(d, int)]
            if bad:
                raise VideployError(f"input {t.name!r} of graph '{g.role}' has symbolic dimensions {bad} besides the batch; re-export with fixed frames / image size")
            profile.append(ProfileShape(t.name, (batch.min, *rest), (batch.opt, *rest), (batch.max, *rest)))
        graphs.append(GraphBuild(g.role, onnx_file, convert_from, ENGINE_FILE.format(role=g.role, precision=precision), tuple(profile)))
    if major >= 11:
        strongly_typed, set_flags, clear_flags = True, (), ()
    else:
        strongly_typed = False
        set_flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",)}[precision]
        # fp32 means fp32: TF32 (on by default on Ampere+) changes matmul/conv results by ~1e-3
        clear_flags = ("TF32",) if precision == "fp32" else ()
    return BuildPlan(
        precision=precision,
        tensorrt_version=tensorrt_version,
        major=major,
        strongly_typed=strongly_typed,
        set_flags=set_flags,
        clear_flags=clear_flags,
        workspace_bytes=int(workspace_gb * 2**30) if workspace_gb else None,
        timing_cache_file=TIMING_CACHE_FILE,
        timing_cache_source=str(timing_cache) if timing_cache is not None else None,
        graphs=tuple(graphs),
    )


def updated_manifest(manifest: Manifest, plan: BuildPlan, built_at: str | None = None) -> Manifest:
    """The manifest after ``plan`` ran: engines (and converted fp16 graphs) recorded per graph."""
    by_role = {g.role: g for g in plan.graphs}
    graphs = []
    for g in manifest.graphs:
        b = by_role[g.role]
        engines = {**g.engines, plan.precision: b.engine_file}
        variants = dict(g.variants)
        if b.convert_from is not None:
            variants["fp16"] = b.onnx_file
        graphs.append(replace(g, engines=engines, variants=variants))
    trt_prov = dict(manifest.provenance.get("tensorrt", {}) or {})
    trt_prov[plan.precision] = {
        "version": plan.tensorrt_version,
        "strongly_typed": plan.strongly_typed,
        "set_flags": list(plan.set_flags),
        "clear_flags": list(plan.clear_flags),
        "timing_cache": plan.timing_cache_file,
        "built_at": built_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return manifest.with_updates(graphs=tuple(graphs), provenance={**manifest.provenance, "tensorrt": trt_prov})


# --- the TensorRT part (needs TensorRT and a GPU) ----------------------------------------------
# Engine vs ONNX (onnxruntime) agreement per precision: fp32 is TensorRT's own kernels (TF32 off),
# fp16 halves the mantissa (DESIGN: ~1e-2 relative), INT8 is judged by agreement (cosine, top-1).
ENGINE_TOLERANCE = {
    "fp32": Tolerance(rtol=1e-3, atol=1e-3, min_cosine=0.9999),
    "fp16": Tolerance(rtol=2e-2, atol=2e-2, min_cosine=0.999),
    "int8": Tolerance(rtol=math.inf, atol=math.inf, min_cosine=0.99),
}
VERIFY_BATCHES = (1, 2)


def build_engines(
    bundle: BundleLike,
    precision: str = "fp16",
    workspace_gb: float | None = None,
    timing_cache: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    verify: bool = True,
    video: str | Path | None = None,
) -> tuple[Manifest, BuildPlan]:
    """Build one engine per graph of ``bundle`` and record them in its manifest (atomically).

    ``verify``: every engine is then run through the runtime's path (AdaFocusV3: the chain, every
    exit) against the bundle's ONNX graphs on onnxruntime, on real decoded frames (``video``, else
    the sample clip), within :data:`ENGINE_TOLERANCE` for the precision; the report goes into the
    manifest (``provenance.tensorrt.verification``), and a failure leaves the bundle as it was.
    """
    say = progress or (lambda msg: None)
    bundle = Bundle.of(bundle)
    manifest = bundle.manifest
    trt = require("tensorrt", "building TensorRT engines")
    plan = plan_build(manifest, precision, str(trt.__version__), workspace_gb, timing_cache)
    external_cache = Path(timing_cache) if timing_cache is not None else None
    with updating_bundle(bundle.root) as stage:
        cache_bytes = b""
        if external_cache is not None and external_cache.is_file():
            cache_bytes = external_cache.read_bytes()
        elif (stage / plan.timing_cache_file).is_file():
            cache_bytes = (stage / plan.timing_cache_file).read_bytes()
        for g in plan.graphs:
            if g.convert_from is not None:
                say(f"converting graph '{g.role}' to fp16")
                _write_fp16(stage / g.convert_from, stage / g.onnx_file)
            say(f"building the {precision} engine of graph '{g.role}' (this takes minutes)")
            engine, cache_bytes = _build_one(trt, plan, g, stage / g.onnx_file, cache_bytes)
            (stage / g.engine_file).write_bytes(engine)
        (stage / plan.timing_cache_file).write_bytes(cache_bytes)
        if external_cache is not None:
            external_cache.parent.mkdir(parents=True, exist_ok=True)
            external_cache.write_bytes(cache_bytes)
        manifest = updated_manifest(manifest, plan)
        if verify:
            say(f"verifying the {precision} engines against the ONNX graphs on onnxruntime, on real frames")
            report = verify_engines(Bundle(stage, manifest), precision, video)
            if not report.passed:
                failed = report.failures()
                listed = "\n  ".join(r.describe() for r in failed[:10])
                raise VideployError(
                    f"the {precision} TensorRT engines differ from the ONNX graphs beyond the tolerance "
                    f"({report.tolerance.criterion()}):\n  {listed}\nthe bundle was left unchanged; try --precision fp32, or --no-verify to keep them anyway"
                )
            trt_prov = dict(manifest.provenance.get("tensorrt", {}))
            trt_prov["verification"] = {**trt_prov.get("verification", {}), precision: report.to_dict()}
            manifest = manifest.with_updates(provenance={**manifest.provenance, "tensorrt": trt_prov})
        write_manifest(stage, manifest)
    return Bundle.open(bundle.root).manifest, plan


def verify_engines(bundle: Bundle, precision: str, video: str | Path | None = None) -> VerificationReport:
    """The ``precision`` engines of ``bundle`` vs its ONNX graphs on onnxruntime (CPU), through the runtime."""
    from videploy.export.verify import batch_of, real_views
    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from videploy.runtime.backends.tensorrt import TensorRTBackend

    view, description = real_views(bundle.manifest.preprocessing, video)
    rng = bundle.manifest.batch
    sizes = sorted({min(max(n, rng.min), rng.max) for n in VERIFY_BATCHES})
    reference = OnnxRuntimeBackend(bundle)
    candidate = TensorRTBackend(bundle, precision=precision)
    try:
        return compare_backends(reference, candidate, [batch_of(view, n) for n in sizes], description, ENGINE_TOLERANCE[precision])
    finally:
        candidate.close()
        reference.close()


def check_conversions(bundle: Bundle, plan: BuildPlan) -> list[str]:
    """What ``--dry-run`` can check without TensorRT: every graph the plan converts to fp16 converts,
    passes the ONNX checker with full type inference and loads in onnxruntime. Lines for the plan."""
    onnx = require("onnx", "checking fp16 conversions")
    ort = require("onnxruntime", "checking fp16 conversions")
    from videploy.export.fp16 import convert_to_fp16

    lines = []
    for g in plan.graphs:
        if g.convert_from is None:
            continue
        try:
            converted = convert_to_fp16(onnx.load(str(bundle.path(g.convert_from))))
            onnx.checker.check_model(converted, full_check=True)
            ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # the converter's VideployError, or onnx / onnxruntime's own exception types
            detail = " ".join(str(exc).split())[:500]
            raise VideployError(f"graph '{g.role}' ({g.convert_from}) cannot be converted to fp16: {detail}; build --precision fp32 instead") from exc
        lines.append(f"graph '{g.role}': fp16 conversion checked (ONNX checker with type inference, onnxruntime loads it)")
    return lines


def _write_fp16(src: Path, dst: Path) -> None:
    onnx = require("onnx", "converting graphs to fp16")
    from videploy.export.fp16 import convert_to_fp16

    onnx.save_model(convert_to_fp16(onnx.load(str(src))), str(dst))


def _build_one(trt, plan: BuildPlan, g: GraphBuild, onnx_path: Path, cache_bytes: bytes) -> tuple[bytes, bytes]:  # pragma: no cover - needs a GPU
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise VideployError(f"TensorRT's ONNX parser rejected graph '{g.role}' ({onnx_path.name}):\n  {errors}")
    config = builder.create_builder_config()
    if plan.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    for name in plan.set_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.clear_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is not None:
            config.clear_flag(flag)
    profile = builder.create_optimization_profile()
    for p in g.profile:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=True)  # a cache from another GPU / version is skipped, not fatal
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise VideployError(f"TensorRT failed to build the {plan.precision} engine of graph '{g.role}'; the log above says why")
    new_cache = bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(serialized)), new_cache
