"""The bundle manifest: everything the runtime needs, and nothing it must guess.

A bundle is a directory written by ``videploy.export`` and read by ``videploy.runtime``:
``manifest.json`` plus the graph files (and, after ``videploy build``, engines and a timing
cache). This module is the contract between the two sides, so it imports neither torch nor
onnx: an edge device reads it with the standard library alone.

Every field is validated on load; an error names the field (as a dotted path such as
``graphs[1].inputs[0].dtype``) and says what was expected.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from videploy.errors import VideployError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

FAMILIES = ("video_focalnet", "stam", "adafocusv3")
DTYPES = ("float32", "float16", "int64", "int32", "bool", "uint8")
PRECISIONS = ("fp32", "fp16", "int8")
# ONNX graph variants: a precision, or "int8-cpu" (INT8 laid out for onnxruntime's CPU kernels,
# uint8 activations; "int8" is the symmetric Q/DQ form TensorRT builds from).
VARIANTS = (*PRECISIONS, "int8-cpu")
# The graph roles of each family, in execution order.
ROLES = {
    "video_focalnet": ("main",),
    "stam": ("main",),
    "adafocusv3": ("glance", "policy", "local"),
}
SAMPLINGS = ("clip", "uniform", "segments")
LAYOUTS = ("BTCHW",)


def _fail(path: str, message: str) -> VideployError:
    return VideployError(f"invalid bundle manifest: field '{path}' {message}")


def _check_type(path: str, value: Any, types: type | tuple[type, ...], what: str) -> None:
    # bool is an int in Python; a manifest that says `"num_classes": true` is still wrong.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _fail(path, f"must be {what}, got {value!r}")
    if not isinstance(value, types):
        raise _fail(path, f"must be {what}, got {type(value).__name__} {value!r}")


def _check_relpath(path: str, value: Any) -> str:
    """A bundle-relative path that cannot leave the bundle."""
    _check_type(path, value, str, "a relative file path")
    p = PurePosixPath(value)
    if not value or p.is_absolute() or "\\" in value or ".." in p.parts or value.startswith("~"):
        raise _fail(path, f"must be a relative path inside the bundle, got {value!r}")
    return value


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. ``shape`` entries are ints or symbolic names (``"batch"``)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    @classmethod
    def parse(cls, path: str, d: Any) -> "TensorSpec":
        _check_type(path, d, dict, "an object")
        _check_type(f"{path}.name", d.get("name"), str, "a tensor name")
        shape = d.get("shape")
        _check_type(f"{path}.shape", shape, list, "a list of ints or symbolic names")
        for i, s in enumerate(shape):
            if isinstance(s, bool) or not isinstance(s, (int, str)) or (isinstance(s, int) and s < 0):
                raise _fail(f"{path}.shape[{i}]", f"must be a non-negative int or a symbolic name, got {s!r}")
        dtype = d.get("dtype", "float32")
        if dtype not in DTYPES:
            raise _fail(f"{path}.dtype", f"must be one of {DTYPES}, got {dtype!r}")
        return cls(name=d["name"], shape=tuple(shape), dtype=dtype)


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph of the bundle and how to call it."""

    role: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    gflops: float  # per video (batch 1), one call
    # precision -> engine file, filled by `videploy build`
    engines: Mapping[str, str] = field(default_factory=dict)
    # precision -> ONNX file of a quantized / converted variant (calibration), if any
    variants: Mapping[str, str] = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise VideployError(f"graph '{self.role}' has no input named {name!r}; its inputs are {[t.name for t in self.inputs]}")

    @classmethod
    def parse(cls, path: str, d: Any) -> "GraphSpec":
        _check_type(path, d, dict, "an object")
        _check_type(f"{path}.role", d.get("role"), str, "a graph role")
        file = _check_relpath(f"{path}.file", d.get("file"))
        ins = d.get("inputs")
        outs = d.get("outputs")
        _check_type(f"{path}.inputs", ins, list, "a list of tensors")
        _check_type(f"{path}.outputs", outs, list, "a list of tensors")
        if not ins or not outs:
            raise _fail(f"{path}.inputs/outputs", "must not be empty")
        gflops = d.get("gflops")
        _check_type(f"{path}.gflops", gflops, (int, float), "a number")
        engines = d.get("engines", {})
        variants = d.get("variants", {})
        for key, mapping, allowed in (("engines", engines, PRECISIONS), ("variants", variants, VARIANTS)):
            _check_type(f"{path}.{key}", mapping, dict, "an object mapping precision to file")
            for prec, f in mapping.items():
                if prec not in allowed:
                    raise _fail(f"{path}.{key}.{prec}", f"is not a precision; use one of {allowed}")
                _check_relpath(f"{path}.{key}.{prec}", f)
        return cls(
            role=d["role"],
            file=file,
            inputs=tuple(TensorSpec.parse(f"{path}.inputs[{i}]", t) for i, t in enumerate(ins)),
            outputs=tuple(TensorSpec.parse(f"{path}.outputs[{i}]", t) for i, t in enumerate(outs)),
            gflops=float(gflops),
            engines=dict(engines),
            variants=dict(variants),
        )


@dataclass(frozen=True)
class Preprocessing:
    """How frames are sampled and normalised before the first graph, as the official evaluation does.

    ``sampling``:
      * ``clip``: Video-FocalNet / mmaction ``SampleFrames(clip_len=1, frame_interval, num_clips=num_frames,
        test_mode=True)``; ``frame_interval`` is kept for provenance, multi-view uses ``num_clips`` offsets.
      * ``uniform``: ``num_frames`` frames spread uniformly over the video (STAM).
      * ``segments``: TSN segment sampling, the centre frame of each of ``num_frames`` equal segments (AdaFocusV3).
    Pixel values: RGB, scaled to [0, 1] when ``scale`` is 1/255, then ``(x - mean) / std``.
    ``resize_short`` is the short side before the centre crop; 0 resizes straight to ``crop_size``.
    """

    num_frames: int
    sampling: str
    crop_size: tuple[int, int]  # (H, W)
    resize_short: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0 / 255.0
    layout: str = "BTCHW"
    dtype: str = "float32"
    channel_order: str = "RGB"
    frame_interval: int = 1
    # the official multi-view test protocol (averaged softmax / logits over clips x crops)
    num_clips: int = 1
    num_crops: int = 1

    @classmethod
    def parse(cls, path: str, d: Any) -> "Preprocessing":
        _check_type(path, d, dict, "an object")
        for key in ("num_frames", "resize_short", "frame_interval", "num_clips", "num_crops"):
            if key in d or key in ("num_frames", "resize_short"):
                _check_type(f"{path}.{key}", d.get(key), int, "an integer")
        if d["num_frames"] < 1:
            raise _fail(f"{path}.num_frames", f"must be >= 1, got {d['num_frames']}")
        if d.get("sampling") not in SAMPLINGS:
            raise _fail(f"{path}.sampling", f"must be one of {SAMPLINGS}, got {d.get('sampling')!r}")
        crop = d.get("crop_size")
        if not (isinstance(crop, list) and len(crop) == 2 and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in crop)):
            raise _fail(f"{path}.crop_size", f"must be [height, width] in pixels, got {crop!r}")
        for key in ("mean", "std"):
            v = d.get(key)
            if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                raise _fail(f"{path}.{key}", f"must be three numbers (R, G, B), got {v!r}")
        if any(x <= 0 for x in d["std"]):
            raise _fail(f"{path}.std", "must be positive")
        if d.get("layout", "BTCHW") not in LAYOUTS:
            raise _fail(f"{path}.layout", f"must be one of {LAYOUTS}, got {d.get('layout')!r}")
        if d.get("channel_order", "RGB") not in ("RGB", "BGR"):
            raise _fail(f"{path}.channel_order", f"must be 'RGB' or 'BGR', got {d.get('channel_order')!r}")
        if d.get("dtype", "float32") not in ("float32", "float16"):
            raise _fail(f"{path}.dtype", f"must be 'float32' or 'float16', got {d.get('dtype')!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise _fail(f"{path}.{sorted(unknown)[0]}", f"is not a preprocessing field; known fields: {sorted(known)}")
        kw = dict(d)
        kw["crop_size"] = tuple(crop)
        kw["mean"] = tuple(float(x) for x in d["mean"])
        kw["std"] = tuple(float(x) for x in d["std"])
        if "scale" in kw:
            _check_type(f"{path}.scale", kw["scale"], (int, float), "a number")
            kw["scale"] = float(kw["scale"])
        return cls(**kw)


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes a bundle accepts; ``min == max`` is a fixed batch. ``opt`` feeds TensorRT profiles."""

    min: int = 1
    opt: int = 1
    max: int = 1

    @property
    def dynamic(self) -> bool:
        return self.min != self.max

    @classmethod
    def parse(cls, path: str, d: Any) -> "BatchRange":
        _check_type(path, d, dict, "an object with min/opt/max")
        vals = {}
        for key in ("min", "opt", "max"):
            _check_type(f"{path}.{key}", d.get(key), int, "an integer")
            vals[key] = d[key]
        if not 1 <= vals["min"] <= vals["opt"] <= vals["max"]:
            raise _fail(path, f"must satisfy 1 <= min <= opt <= max, got {vals}")
        return cls(**vals)


@dataclass(frozen=True)
class EarlyExit:
    """AdaFocusV3's exits: exit 0 is the glance, exit t (1..num_steps) follows local step t.

    ``exit_gflops[t]`` is the cumulative cost per video when it stops at exit t.
    ``thresholds[t]`` is eta_t: a video stops at exit t as soon as entropy(softmax(logits_t)) <= eta_t
    (entropy in nats). ``None`` values in JSON stand for +inf / -inf as written by ``_enc_float``.
    """

    num_segments: int
    glance_indices: tuple[int, ...]  # which of the num_segments sampled frames the glance graph sees
    num_steps: int  # focus steps (local-encoder calls at most)
    frames_per_cube: int
    patch_size: int
    exit_gflops: tuple[float, ...]
    thresholds: tuple[float, ...] | None = None
    criterion: str = "entropy"
    state_size: int = 4096

    @classmethod
    def parse(cls, path: str, d: Any) -> "EarlyExit":
        _check_type(path, d, dict, "an object")
        for key in ("num_segments", "num_steps", "frames_per_cube", "patch_size"):
            _check_type(f"{path}.{key}", d.get(key), int, "an integer")
        gi = d.get("glance_indices")
        _check_type(f"{path}.glance_indices", gi, list, "a list of frame indices")
        if not gi or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < d["num_segments"] for i in gi):
            raise _fail(f"{path}.glance_indices", f"must be indices in [0, num_segments={d['num_segments']}), got {gi!r}")
        eg = d.get("exit_gflops")
        if not (isinstance(eg, list) and len(eg) == d["num_steps"] + 1):
            raise _fail(f"{path}.exit_gflops", f"must list num_steps + 1 = {d['num_steps'] + 1} cumulative costs, got {eg!r}")
        th = d.get("thresholds")
        if th is not None:
            if not (isinstance(th, list) and len(th) == d["num_steps"] + 1):
                raise _fail(f"{path}.thresholds", f"must list num_steps + 1 = {d['num_steps'] + 1} values, got {th!r}")
            th = tuple(_dec_float(f"{path}.thresholds[{i}]", v) for i, v in enumerate(th))
        if d.get("criterion", "entropy") != "entropy":
            raise _fail(f"{path}.criterion", f"must be 'entropy', got {d.get('criterion')!r}")
        return cls(
            num_segments=d["num_segments"],
            glance_indices=tuple(gi),
            num_steps=d["num_steps"],
            frames_per_cube=d["frames_per_cube"],
            patch_size=d["patch_size"],
            exit_gflops=tuple(float(x) for x in eg),
            thresholds=th,
            criterion="entropy",
            state_size=int(d.get("state_size", 4096)),
        )


def _enc_float(x: float) -> float | str:
    # JSON has no infinities; "inf" / "-inf" strings keep the manifest strict JSON.
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _dec_float(path: str, v: Any) -> float:
    if v in ("inf", "+inf"):
        return math.inf
    if v == "-inf":
        return -math.inf
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(path, f"must be a number, 'inf' or '-inf', got {v!r}")
    return float(v)


@dataclass(frozen=True)
class Manifest:
    """The whole manifest. Build it with keyword arguments; ``to_dict``/``from_dict`` round-trip it."""

    family: str
    model_name: str
    config: Mapping[str, Any]  # the official constructor kwargs the model was built from
    num_classes: int
    preprocessing: Preprocessing
    graphs: tuple[GraphSpec, ...]
    batch: BatchRange = BatchRange()
    precision: str = "fp32"
    gflops_per_view: float = 0.0
    early_exit: EarlyExit | None = None
    labels: str | None = None  # bundle-relative label file (one name per line, or id,name CSV)
    weights: Mapping[str, Any] | None = None  # None: random initialisation; else {"file": name, "sha256": ...}
    verification: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    opset: int = 0
    format_version: int = FORMAT_VERSION

    def graph(self, role: str) -> GraphSpec:
        for g in self.graphs:
            if g.role == role:
                return g
        raise VideployError(f"bundle of {self.model_name!r} has no graph with role {role!r}; it has {[g.role for g in self.graphs]}")

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocessing"]["crop_size"] = list(self.preprocessing.crop_size)
        if self.early_exit is not None and self.early_exit.thresholds is not None:
            d["early_exit"]["thresholds"] = [_enc_float(x) for x in self.early_exit.thresholds]
        return _lists(d)

    @classmethod
    def from_dict(cls, d: Any) -> "Manifest":
        _check_type("<manifest>", d, dict, "a JSON object")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise VideployError(
                f"bundle manifest has format_version {version!r}, but this videploy reads format {FORMAT_VERSION}; "
                "re-export the model with this version of videploy (videploy export ...)"
            )
        family = d.get("family")
        if family not in FAMILIES:
            raise _fail("family", f"must be one of {FAMILIES}, got {family!r}")
        _check_type("model_name", d.get("model_name"), str, "a string")
        _check_type("config", d.get("config"), dict, "an object")
        _check_type("num_classes", d.get("num_classes"), int, "an integer")
        if d["num_classes"] < 1:
            raise _fail("num_classes", "must be >= 1")
        graphs_raw = d.get("graphs")
        _check_type("graphs", graphs_raw, list, "a list of graphs")
        graphs = tuple(GraphSpec.parse(f"graphs[{i}]", g) for i, g in enumerate(graphs_raw))
        roles = tuple(g.role for g in graphs)
        if roles != ROLES[family]:
            raise _fail("graphs", f"of a {family} bundle must have the roles {list(ROLES[family])} in that order, got {list(roles)}")
        precision = d.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise _fail("precision", f"must be one of {PRECISIONS}, got {precision!r}")
        early = d.get("early_exit")
        if family == "adafocusv3" and early is None:
            raise _fail("early_exit", "is required for an adafocusv3 bundle")
        labels = d.get("labels")
        if labels is not None:
            _check_relpath("labels", labels)
        weights = d.get("weights")
        if weights is not None:
            _check_type("weights", weights, dict, "an object or null")
        verification = d.get("verification")
        if verification is not None:
            _check_type("verification", verification, dict, "an object or null")
        prov = d.get("provenance", {})
        _check_type("provenance", prov, dict, "an object")
        gpv = d.get("gflops_per_view", 0.0)
        _check_type("gflops_per_view", gpv, (int, float), "a number")
        opset = d.get("opset", 0)
        _check_type("opset", opset, int, "an integer")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise _fail(sorted(unknown)[0], f"is not a manifest field; known fields: {sorted(known)}")
        return cls(
            family=family,
            model_name=d["model_name"],
            config=d["config"],
            num_classes=d["num_classes"],
            preprocessing=Preprocessing.parse("preprocessing", d.get("preprocessing")),
            graphs=graphs,
            batch=BatchRange.parse("batch", d.get("batch", {"min": 1, "opt": 1, "max": 1})),
            precision=precision,
            gflops_per_view=float(gpv),
            early_exit=None if early is None else EarlyExit.parse("early_exit", early),
            labels=labels,
            weights=weights,
            verification=verification,
            provenance=prov,
            opset=opset,
            format_version=version,
        )

    def files(self) -> list[str]:
        """Every bundle-relative file the manifest refers to."""
        out = []
        for g in self.graphs:
            out.append(g.file)
            out.extend(g.engines.values())
            out.extend(g.variants.values())
        if self.labels:
            out.append(self.labels)
        return out

    def with_updates(self, **changes: Any) -> "Manifest":
        return replace(self, **changes)


def _lists(x: Any) -> Any:
    """Tuples to lists, recursively, so the dict is plain JSON."""
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    return x


def read_manifest(bundle_dir: str | Path, check_files: bool = True) -> Manifest:
    """Read and validate ``bundle_dir/manifest.json``; with ``check_files``, every referenced file must exist."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise VideployError(f"bundle directory {str(root)!r} does not exist; create one with: videploy export MODEL -o {root}")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise VideployError(f"{str(root)!r} is not a videploy bundle: it has no {MANIFEST_NAME}; create one with: videploy export MODEL -o {root}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VideployError(f"{path} is not valid JSON ({exc}); the bundle is damaged, re-export it") from exc
    manifest = Manifest.from_dict(raw)
    if check_files:
        resolved_root = root.resolve()
        for rel in manifest.files():
            target = (root / rel).resolve()
            if resolved_root not in target.parents:
                raise VideployError(f"bundle manifest refers to {rel!r}, which resolves outside the bundle {str(root)!r}; refusing to read it")
            if not target.is_file():
                raise VideployError(f"bundle {str(root)!r} is missing {rel!r}, which its manifest lists; the bundle is incomplete, re-export it")
    return manifest


def write_manifest(bundle_dir: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` (validated by a round trip first, so a bad manifest is never written)."""
    d = manifest.to_dict()
    Manifest.from_dict(json.loads(json.dumps(d)))
    path = Path(bundle_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(d, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
