"""``export_bundle``: a zoo model -> a verified, self-contained bundle directory.

Pipeline per graph role (``model.deploy_graphs()``): dynamo export -> onnxslim -> full ONNX check
-> TensorRT op check -> saved with weights inline. Then every graph is verified against PyTorch
on a real video (:mod:`videploy.export.verify`), GFLOPs are counted, and the manifest is written.
All of it happens inside :func:`videploy.bundle.staged_bundle`: the bundle directory appears only
when everything passed; a failure or Ctrl-C leaves nothing behind (nor an old bundle damaged).
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import json
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from videploy import __version__
from videploy.bundle.bundle import Bundle
from videploy.bundle.manifest import MAX_BATCH, ROLES, BatchRange, GraphSpec, Manifest, TensorSpec, write_manifest
from videploy.bundle.writer import prepare_output, staged_bundle
from videploy.errors import VideployError
from videploy.export.verify import DEFAULT_BATCH_SIZES
from videploy.runtime.compare import Tolerance, VerificationReport
from videploy.optional import require

if TYPE_CHECKING:  # pragma: no cover
    from videploy.models.base import GraphModule, VideoModel

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
RANDOM_WEIGHTS_WARNING = (
    "RANDOM WEIGHTS: no --checkpoint was given, so the bundle holds a randomly initialised model "
    "(seed 0). Its predictions are meaningless; the manifest records \"weights\": null. "
    "Pass --checkpoint PATH (official or own weights) for a real model."
)
# Bundle-relative file names
GRAPH_FILE = "{role}.onnx"
LABELS_STEM = "labels"


@dataclasses.dataclass(frozen=True)
class ExportResult:
    bundle: Path
    manifest: Manifest
    report: VerificationReport
    warnings: tuple[str, ...]
    seconds: float
    stage_seconds: Mapping[str, float]


# --- option parsing (pure; shared with the CLI) -------------------------------------------------
def parse_batch(spec: str | int | BatchRange | None) -> BatchRange:
    """``"2"`` (fixed), ``"1:4:8"`` (min:opt:max) or ``"1:8"`` (min:max, opt = max) -> :class:`BatchRange`."""
    if spec is None:
        return BatchRange(1, 4, 16)
    if isinstance(spec, BatchRange):
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        parts = [spec]
    else:
        text = str(spec).strip()
        try:
            parts = [int(p) for p in text.split(":")]
        except ValueError:
            raise VideployError(f"--batch {spec!r} is not a batch size: use N (fixed), MIN:MAX or MIN:OPT:MAX, e.g. --batch 1:4:8") from None
    if len(parts) == 1:
        lo = opt = hi = parts[0]
    elif len(parts) == 2:
        lo, hi = parts
        opt = hi
    elif len(parts) == 3:
        lo, opt, hi = parts
    else:
        raise VideployError(f"--batch {spec!r} has {len(parts)} fields; use N, MIN:MAX or MIN:OPT:MAX")
    if not 1 <= lo <= opt <= hi:
        raise VideployError(f"--batch {spec!r} must satisfy 1 <= min <= opt <= max")
    if hi > MAX_BATCH:
        raise VideployError(f"--batch {spec!r}: the maximum batch must be at most {MAX_BATCH} (a bundle's limit)")
    return BatchRange(lo, opt, hi)


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON first (``[1,1,1,1]``, ``true``, ``null``), then a Python literal, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["embed_dim=16", "depths=[1,1,1,1]"]`` -> ``{"embed_dim": 16, "depths": [1, 1, 1, 1]}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise VideployError(f"--set {item!r} is not KEY=VALUE with KEY an official keyword (e.g. --set embed_dim=16)")
        out[key] = parse_value(value.strip())
    return out


def count_labels(path: Path) -> int:
    """Non-empty lines of a label file (one name per line, or ``id,name`` CSV)."""
    return sum(1 for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip())


# --- the export ---------------------------------------------------------------------------------
def _graph_gflops(module: "GraphModule", inputs: tuple[Any, ...]) -> float:
    from videploy.models.flops import count_gflops

    return float(count_gflops(module, inputs))


ORT_PURPOSE = "exporting (every graph is verified with onnxruntime)"


def _versions() -> dict[str, str | None]:
    import onnx
    import onnxscript
    import torch

    from videploy.export.simplify import onnxslim_version

    onnxruntime = require("onnxruntime", ORT_PURPOSE)

    return {
        "videploy": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxscript": getattr(onnxscript, "__version__", None),
        "onnxslim": onnxslim_version(),
        "python": platform.python_version(),
    }


def build_model(
    model: "str | VideoModel",
    overrides: Mapping[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    name: str | None = None,
) -> tuple["VideoModel", str, dict[str, Any] | None, list[str]]:
    """The model (eval mode), its name, the manifest's ``weights`` and warnings."""
    import torch

    from videploy.models.base import VideoModel

    warnings: list[str] = []
    if isinstance(model, str):
        from videploy.models import create

        name = model
        torch.manual_seed(0)  # random init is reproducible: the same command gives the same bundle
        built = create(model, **dict(overrides or {}))
    else:
        if overrides:
            raise VideployError("overrides apply to a model name; pass either a model instance or a name with overrides")
        built, name = model, name or type(model).family or type(model).__name__
    if not isinstance(built, VideoModel):
        raise VideployError(f"{name!r} is a building block ({type(built).__name__}), not a deployable video model; export a zoo model (videploy models)")
    weights: dict[str, Any] | None = None
    if checkpoint is not None:
        from videploy.models import load_checkpoint

        path = Path(checkpoint)
        report = load_checkpoint(built, path)  # says what is wrong with a missing, foreign or damaged file
        weights = {"file": path.name, "sha256": report.sha256}
    else:
        warnings.append(RANDOM_WEIGHTS_WARNING)
        log.warning(RANDOM_WEIGHTS_WARNING)
    return built.eval(), name, weights, warnings


def _check_video_fits(model: "VideoModel", graphs: Mapping[str, "GraphModule"], view: np.ndarray) -> None:
    """The decoded video must have the shape the first graph takes (else preprocessing and model disagree)."""
    ee = model.early_exit()
    first = next(iter(graphs.values()))
    expected = tuple(first.example_inputs(1)[0].shape[2:])  # (3, H, W)
    got = tuple(view.shape[2:])
    frames = ee.num_segments if ee is not None else first.example_inputs(1)[0].shape[1]
    if got != expected or view.shape[1] != frames:
        raise VideployError(
            f"{type(model).__name__}.preprocessing() decodes views of shape {tuple(view.shape[1:])} but the model takes "
            f"({frames}, {', '.join(map(str, expected))}); the model's preprocessing and its input size disagree"
        )


def export_bundle(
    model: "str | VideoModel",
    output: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    batch: str | int | BatchRange | None = None,
    opset: int | None = None,
    simplify: bool = True,
    labels: str | Path | None = None,
    overwrite: bool = False,
    video: str | Path | None = None,
    tolerance: Tolerance | None = None,
    verify_batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    progress: Progress | None = None,
    name: str | None = None,
) -> ExportResult:
    """Export ``model`` (zoo / family name, or a built :class:`VideoModel`) to a verified bundle at ``output``.

    ``batch``: see :func:`parse_batch` (graphs are always batch-dynamic; the range sets TensorRT
    profiles). ``opset``: None = the exporter's default (>= 17 enforced). ``video``: the clip used
    for verification (default: the runtime's sample video). ``name``: the manifest's model name
    when ``model`` is an instance (default: its family). Raises :class:`VideployError` on any
    failure, leaving no bundle behind.
    """
    import onnx
    import torch

    from videploy.export import checks
    from videploy.export.onnx_export import check_opset, export_graph, opset_of, tensor_specs
    from videploy.export.simplify import simplify as slim
    from videploy.export.verify import real_views, verify

    require("onnxruntime", ORT_PURPOSE)  # before minutes of export work, not after
    tolerance = tolerance or Tolerance()
    say = progress or (lambda msg: None)
    t_start = time.perf_counter()
    stages: dict[str, float] = {}

    def stage(name: str, t0: float) -> float:
        now = time.perf_counter()
        stages[name] = stages.get(name, 0.0) + now - t0
        return now

    check_opset(opset)
    batch_range = parse_batch(batch)
    label_path = Path(labels) if labels is not None else None
    if label_path is not None and not label_path.is_file():
        raise VideployError(f"label file {str(label_path)!r} does not exist")
    output = Path(output)
    # staged_bundle checks this too, but only after minutes of export work
    prepare_output(output, overwrite)

    t = time.perf_counter()
    say("building the model")
    built, name, weights, warnings = build_model(model, overrides, checkpoint, name)
    family = type(built).family
    graphs = built.deploy_graphs()
    roles = tuple(graphs)
    if family not in ROLES or roles != ROLES[family]:
        raise VideployError(f"{name!r} ({family}) deploys graphs {list(roles)}, but a {family} bundle needs {list(ROLES.get(family, ()))}")
    early_exit = built.early_exit()
    preprocessing = built.preprocessing()
    if label_path is not None:
        n = count_labels(label_path)
        if n not in (built.num_classes, built.num_classes + 1):  # +1: a CSV header line
            raise VideployError(f"label file {str(label_path)!r} has {n} entries but {name!r} has {built.num_classes} classes")
    t = stage("build", t)

    say("decoding the verification video")
    view, inputs_description = real_views(preprocessing, video)
    _check_video_fits(built, graphs, view)
    t = stage("decode", t)

    threads = torch.get_num_threads()
    with staged_bundle(output, overwrite=overwrite) as stage_dir:
        specs: list[GraphSpec] = []
        opsets: set[int] = set()
        for role, module in graphs.items():
            say(f"exporting graph '{role}' ({type(module).__name__}) with torch.onnx dynamo")
            proto = export_graph(module, role, opset)
            t = stage("export", t)
            if simplify:
                say(f"simplifying graph '{role}' with onnxslim")
                proto = slim(proto, role)
                t = stage("simplify", t)
            say(f"checking graph '{role}' (onnx full check, TensorRT op support)")
            checks.check_onnx(proto, role)
            checks.check_tensorrt_compatible(proto, role)
            t = stage("check", t)
            rel = GRAPH_FILE.format(role=role)
            onnx.save_model(proto, str(stage_dir / rel))
            opsets.add(opset_of(proto))
            say(f"counting GFLOPs of graph '{role}'")
            gflops = _graph_gflops(module, tuple(module.example_inputs(1)))
            t = stage("gflops", t)
            specs.append(
                GraphSpec(
                    role=role,
                    file=rel,
                    inputs=tuple(TensorSpec.parse(f"{role}.inputs", d) for d in tensor_specs(proto.graph.input)),
                    outputs=tuple(TensorSpec.parse(f"{role}.outputs", d) for d in tensor_specs(proto.graph.output)),
                    gflops=gflops,
                )
            )
            del proto
        if len(opsets) != 1:  # pragma: no cover - one exporter call per graph with one opset
            raise VideployError(f"graphs were exported with different opsets {sorted(opsets)}")

        label_rel = None
        if label_path is not None:
            label_rel = LABELS_STEM + (label_path.suffix or ".txt")
            shutil.copyfile(label_path, stage_dir / label_rel)

        gflops_per_view = early_exit.exit_gflops[-1] if early_exit is not None else specs[0].gflops
        (opset_used,) = opsets
        provenance = {
            **_versions(),
            "exporter": "torch.onnx.export(dynamo=True)",
            "opset": opset_used,
            "simplified": bool(simplify),
            "checkpoint_sha256": weights["sha256"] if weights else None,
            "overrides": {k: v for k, v in (overrides or {}).items() if v is not None},
            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        manifest = Manifest(
            family=family,
            model_name=name,
            config=built.official_kwargs(),
            num_classes=built.num_classes,
            preprocessing=preprocessing,
            graphs=tuple(specs),
            batch=batch_range,
            precision="fp32",
            gflops_per_view=float(gflops_per_view),
            early_exit=early_exit,
            labels=label_rel,
            weights=weights,
            verification=None,
            provenance=provenance,
            opset=opset_used,
        )

        say(f"verifying against PyTorch on real frames, through the runtime's backends (batch sizes {list(verify_batch_sizes)})")
        report = verify(Bundle(stage_dir, manifest), built, view, inputs_description, verify_batch_sizes, tolerance, threads=threads)
        t = stage("verify", t)
        if not report.passed:
            failed = report.failures()
            listed = "\n  ".join(r.describe() for r in failed[:10])
            more = f"\n  ... and {len(failed) - 10} more" if len(failed) > 10 else ""
            raise VideployError(
                f"verification failed for {name!r}: {len(failed)} output(s) of the ONNX graphs differ from PyTorch beyond "
                f"the tolerance ({tolerance.criterion()}):\n  {listed}{more}\nno bundle was written"
            )
        provenance["export_seconds"] = round(time.perf_counter() - t_start, 2)
        manifest = dataclasses.replace(manifest, verification=report.to_dict(), provenance=provenance)
        write_manifest(stage_dir, manifest)
        manifest = Bundle.open(stage_dir).manifest  # what the runtime will see, files checked
    return ExportResult(output, manifest, report, tuple(warnings), time.perf_counter() - t_start, stages)
