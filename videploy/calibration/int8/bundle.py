"""The INT8 use case: an FP32 bundle + calibration videos -> a new bundle with INT8 graph variants.

Steps (each in its own module):

1. clips: the videos are decoded through the runtime (:mod:`.videos`), split into calibration
   and held-out clips;
2. inputs: what every graph really receives is recorded from the FP32 chain (:mod:`.inputs`),
   cached on disk by the graphs' and the data's hashes together with the held-out clips;
3. ranges: ONNX Runtime's calibrator per graph and method, cached the same way (:mod:`.quantize`);
4. sensitivity: groups of layers that break agreement stay in float (:mod:`.sensitivity`);
   for AdaFocusV3, whole graphs that change what the chain decides stay in float too (:mod:`.chain`);
5. Q/DQ graphs for each target (``variants["int8"]`` for TensorRT, ``variants["int8-cpu"]``
   for onnxruntime on the CPU), written next to the FP32 graphs in a copy of the bundle;
6. agreement on the held-out clips for every variant (:mod:`.agreement`), recorded with
   everything else in ``provenance["int8"]``.

The output bundle is written atomically (:func:`videploy.bundle.writer.staged_bundle`); the input
bundle is never modified. A graph that stays wholly in float is listed as its own variant (its
FP32 file), so every graph has the variant and ``--precision int8`` runs the whole chain.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from videploy.bundle.bundle import Bundle
from videploy.bundle.manifest import write_manifest
from videploy.bundle.writer import staged_bundle
from videploy.cache import cache_root
from videploy.calibration.int8 import agreement, chain, inputs, quantize, sensitivity, videos
from videploy.errors import VideployError
from videploy.jsonsafe import encode

log = logging.getLogger(__name__)

VARIANT_FILE = "{role}.{variant}.onnx"


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize. ``None`` means the default."""

    method: str = "entropy"  # entropy | percentile | minmax (ONNX Runtime's calibrators)
    targets: tuple[str, ...] = ("int8", "int8-cpu")  # variants to write (keys of quantize.SCHEMES)
    clips_per_video: int = 4
    max_clips: int = 64
    holdout_every: int = 4  # every n-th clip is held out for the agreement report
    batch_size: int | None = None  # rows per calibration call (default: min(8, the bundle's maximum))
    sensitivity: bool = True
    min_score: float = 0.995  # per graph, on calibration inputs: lowest output cosine to accept
    keep_float: tuple[str, ...] = ()  # graph roles to leave in float whatever they score
    sensitivity_rows: int = 32  # at most this many calibration rows per graph score each sensitivity trial
    # AdaFocusV3: lowest per-exit mean logit cosine of the whole chain on calibration clips (the per-graph
    # target again: the cube check below is what catches the graphs upstream of the crops)
    min_chain_score: float = 0.995
    min_cube_agreement: float = 0.9  # AdaFocusV3: share of calibration clips whose chosen cubes must not move
    chain_clips: int = 32  # calibration clips the chain analysis runs whole (0: no chain analysis)
    cache_dir: Path | None = None
    progress: bool = False

    def check(self, bundle: Bundle) -> None:
        if self.method not in quantize.METHODS:
            raise VideployError(f"calibration method {self.method!r} is not one of {quantize.METHODS}")
        bad = [t for t in self.targets if t not in quantize.SCHEMES]
        if bad or not self.targets:
            raise VideployError(f"unknown INT8 target {bad[0] if bad else '(none)'}; choose from {sorted(quantize.SCHEMES)}")
        roles = [g.role for g in bundle.manifest.graphs]
        unknown = [r for r in self.keep_float if r not in roles]
        if unknown:
            raise VideployError(f"--keep-float names graph {unknown[0]!r}, but {bundle.name!r} has graphs {roles}")
        if not 0.0 < self.min_score <= 1.0:
            raise VideployError(f"--min-cosine must be in (0, 1], got {self.min_score}")
        if not 0.0 < self.min_chain_score <= 1.0:
            raise VideployError(f"--min-chain-cosine must be in (0, 1], got {self.min_chain_score}")
        if not 0.0 <= self.min_cube_agreement <= 1.0:
            raise VideployError(f"--min-cubes must be in [0, 1], got {self.min_cube_agreement}")
        if self.chain_clips < 0:
            raise VideployError(f"--chain-clips must be >= 0, got {self.chain_clips}")


@dataclass(frozen=True)
class QuantizeResult:
    bundle: Bundle
    agreement: dict[str, agreement.AgreementReport]
    sensitivity: tuple[sensitivity.GraphSensitivity, ...]
    inputs_cached: bool  # the recorded inputs came from the cache (no video was decoded)
    skipped: tuple[str, ...] = field(default_factory=tuple)


def quantize_bundle(
    source: str | Path | Bundle,
    video_sources: Sequence[str | Path],
    output: str | Path,
    options: QuantizeOptions = QuantizeOptions(),
    overwrite: bool = False,
) -> QuantizeResult:
    """Write ``output``: a copy of the FP32 bundle ``source`` with INT8 variants of its graphs."""
    bundle = Bundle.of(source)
    options.check(bundle)
    if bundle.manifest.precision != "fp32":
        raise VideployError(f"{str(bundle.root)!r} holds {bundle.manifest.precision} graphs; quantize the FP32 bundle that export wrote")
    if Path(output).resolve() == bundle.root.resolve():
        raise VideployError("the INT8 bundle must go to a new directory (-o), not over the FP32 bundle it is made from")
    cache_dir = Path(options.cache_dir) if options.cache_dir is not None else cache_root()
    bs = min(8, bundle.manifest.batch.max) if options.batch_size is None else bundle.batch_size(options.batch_size)

    files = videos.video_files(video_sources)
    dkey = videos.data_key(files, bundle.manifest.preprocessing, options.clips_per_video, options.max_clips, options.holdout_every)
    n_chain = options.chain_clips if bundle.adaptive else 0
    ikey = inputs.inputs_key(bundle, dkey, n_chain)
    cache = inputs.InputCache(cache_dir)
    data = cache.load(ikey)
    cached = data is not None
    if data is None:
        clips = videos.decode_clips(files, bundle.manifest.preprocessing, options.clips_per_video, options.max_clips, options.holdout_every, options.progress)
        recorded = inputs.record_inputs(bundle, clips.calibration, bs, options.progress)
        data = inputs.CachedData(recorded, clips.holdout, len(clips.calibration), clips.skipped, clips.calibration[:n_chain])
        cache.store(ikey, data)
    else:
        log.info("calibration inputs from the cache %s (no video decoded)", cache.path(ikey))

    with staged_bundle(output, overwrite=overwrite) as stage, tempfile.TemporaryDirectory(prefix="videploy-int8-") as work:
        shutil.copytree(bundle.root, stage, dirs_exist_ok=True)
        graphs, analyses = [], []
        for g in bundle.manifest.graphs:
            model = bundle.graph_file(g.role)
            feeds = data.inputs.batches(g.role, calibration_rows(g, bs))
            ranges = cache_dir / "ranges" / f"{g.role}-{inputs.graph_digest(bundle, g.role)[:16]}-{ikey[:16]}-{options.method}.json"
            quantize.calibrate(model, feeds, options.method, ranges)
            analysis = _analyse(g.role, model, ranges, data, calibration_rows(g, bs), options, Path(work) / g.role)
            analyses.append(analysis)
            variants = dict(g.variants)
            for target in options.targets:
                if not analysis.quantized_any:
                    variants[target] = g.file
                    continue
                rel = VARIANT_FILE.format(role=g.role, variant=target)
                quantize.quantize_graph(model, stage / rel, quantize.SCHEMES[target], options.method, ranges, analysis.float_nodes, feeds)
                variants[target] = rel
            graphs.append(dataclasses.replace(g, variants=variants))

        chained = None
        if data.chain and options.sensitivity:
            graphs, analyses, chained = _chain(bundle, stage, graphs, analyses, data.chain, bs, options)
        record = _record(bundle, files, data, options, analyses, dkey)
        if chained is not None:
            record["chain"] = encode(chained.to_dict())
        manifest = bundle.manifest.with_updates(graphs=tuple(graphs), provenance={**bundle.manifest.provenance, "int8": encode(record)})
        write_manifest(stage, manifest)
        staged = Bundle.open(stage)
        reports = {}
        if data.holdout:
            for target in options.targets:
                reports[target] = agreement.measure(staged, target, data.holdout, bs, fit_clips=data.chain)
        record["agreement"] = {t: r.to_dict() for t, r in reports.items()}
        manifest = manifest.with_updates(provenance={**bundle.manifest.provenance, "int8": encode(record)})
        write_manifest(stage, manifest)
    return QuantizeResult(Bundle.open(output), reports, tuple(analyses), cached, data.skipped)


# Pixels per calibration call: the calibrator keeps every intermediate tensor of a call until it
# has binned it, so a call must stay small (8 frames of 224x224 is ~1-2 GB for a ResNet-50).
CALIBRATION_ELEMENTS = 8 * 3 * 224 * 224


def calibration_rows(graph: Any, batch_size: int) -> int:
    """Rows per calibration call for ``graph``: at most ``batch_size``, fewer when a row is large (a clip of frames)."""
    per_row = max(
        (math.prod(d for d in t.shape[1:] if isinstance(d, int)) for t in graph.inputs if t.dtype.startswith("float")),
        default=1,
    )
    return max(1, min(batch_size, CALIBRATION_ELEMENTS // max(per_row, 1)))


def _analyse(role: str, model: Path, ranges: Path, data: inputs.CachedData, rows: int, options: QuantizeOptions, work: Path) -> sensitivity.GraphSensitivity:
    if role in options.keep_float:
        return sensitivity.GraphSensitivity(role, options.min_score, float("nan"), 1.0, float_groups=("whole graph (--keep-float)",), quantized_any=False)
    if not options.sensitivity:
        return sensitivity.GraphSensitivity(role, options.min_score, float("nan"), float("nan"))
    # scoring runs every trial on these rows twice (FP32 and INT8): a few calls' worth
    feeds = data.inputs.batches(role, rows, limit=min(options.sensitivity_rows, 4 * rows))

    # scored with the TensorRT layout: the groups found stay in float in every target's graph
    def quantizer(floats: Sequence[str], out: Path) -> Path:
        return quantize.quantize_graph(model, out, quantize.TENSORRT, options.method, ranges, floats, feeds)

    return sensitivity.analyse(role, model, quantizer, feeds, work, options.min_score)


def _chain(bundle: Bundle, stage: Path, graphs: list, analyses: list, clips: Sequence[videos.Clip], bs: int, options: QuantizeOptions) -> tuple[list, list, chain.ChainSensitivity]:
    """Whole graphs that change the chain's decisions go back to float (:mod:`.chain`)."""
    fp32 = {g.role: g.file for g in graphs}
    quantized = [g.role for g in graphs if any(g.variants[t] != g.file for t in options.targets)]

    def trial_bundle(roles: Sequence[str]) -> Bundle:
        trial = [dataclasses.replace(g, variants={**g.variants, **{t: (g.variants[t] if g.role in roles else g.file) for t in options.targets}}) for g in graphs]
        write_manifest(stage, bundle.manifest.with_updates(graphs=tuple(trial)))
        return Bundle.open(stage)

    result = chain.analyse_chain(trial_bundle, quantized, options.targets, clips, bs, options.min_chain_score, options.min_cube_agreement)
    for role in result.float_graphs:
        for t in options.targets:
            (stage / VARIANT_FILE.format(role=role, variant=t)).unlink(missing_ok=True)
    graphs = [dataclasses.replace(g, variants={**g.variants, **{t: fp32[g.role] for t in options.targets}}) if g.role in result.float_graphs else g for g in graphs]
    analyses = [
        dataclasses.replace(a, quantized_any=False, float_groups=("whole graph (chain)",), chain_reason=result.reason(a.graph)) if a.graph in result.float_graphs else a
        for a in analyses
    ]
    return graphs, analyses, result


def _record(bundle: Bundle, files: Sequence[Path], data: inputs.CachedData, options: QuantizeOptions, analyses: Sequence[Any], dkey: str) -> dict[str, Any]:
    import onnxruntime

    return {
        "tool": f"onnxruntime.quantization {onnxruntime.__version__} (quantize_static, QDQ)",
        "method": options.method,
        "variants": {t: quantize.SCHEMES[t].describe() for t in options.targets},
        "calibration": {
            "videos": [str(f) for f in files],
            "data_sha256": dkey,
            "clips": data.calibration_clips,
            "held_out_clips": len(data.holdout),
            "clips_per_video": options.clips_per_video,
            "max_clips": options.max_clips,
            "holdout_every": options.holdout_every,
            "rows_per_graph": {g.role: data.inputs.rows(g.role) for g in bundle.manifest.graphs},
            "pipeline_aware": bundle.adaptive,
            "chain_clips": len(data.chain),
            "skipped_videos": list(data.skipped),
        },
        "float": [
            {"graph": a.graph, "whole_graph": not a.quantized_any, "groups": list(a.float_groups), "nodes": list(a.float_nodes), "reason": a.reason()}
            for a in analyses
            if a.float_groups or not a.quantized_any
        ],
        "sensitivity": [a.to_dict() for a in analyses],
        "agreement": {},
    }
