"""The built-in task end to end: what ``videploy demo`` runs, as a library use case.

The shipped weights (``videploy/weights/*.safetensors``, reproduced by ``videploy train``) were
trained on the generated action videos (:mod:`videploy.datasets.actions`). The demo

1. generates the validation and test splits (or reuses them from the cache: they are a pure
   function of the generator's spec and seed);
2. exports every trained model through the usual path (ONNX, verified against PyTorch) into a
   bundle that carries the class names;
3. runs the AdaFocusV3 bundle through every exit on the validation split and fits exit thresholds
   there (paper Eq. 7, the most accurate thresholds within each compute budget);
4. runs the torch-free runtime on the test split once per table row -- glance only, all steps,
   a random policy at all steps, early exit at each budget, and the comparison models -- and
   measures accuracy, the GFLOPs each video really spent and videos per second (decoding
   included, as ``videploy predict`` runs);
5. writes the accuracy-vs-GFLOPs curve and drawings of the cubes the trained policy chose, and
   measures how often those cubes land on the acting object (the generator knows where it is).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from videploy import jsonsafe
from videploy.cache import cache_root
from videploy.datasets import actions
from videploy.errors import VideployError
from videploy.optional import require

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
ADAPTIVE_MODEL = "adafocusv3_actions"
COMPARISON_MODELS: tuple[tuple[str, str], ...] = (("video_focalnet_actions", "Video-FocalNet"), ("stam_actions", "STAM"))
DEMO_SPLITS: dict[str, int] = {"val": actions.DEFAULT_SPLITS["val"], "test": actions.DEFAULT_SPLITS["test"]}
# Early-exit budgets as fractions of the all-steps cost (the check is <= 60%).
BUDGET_FRACTIONS: tuple[float, ...] = (0.4, 0.5, 0.6)
CUBE_DRAWINGS = 4
FEW_STEPS = 2  # the learned and the random policy are also compared after this many focus steps
INT8_VARIANT = "int8-cpu"  # the variant that runs fastest on onnxruntime CPU
INT8_CALIBRATION_VIDEOS = 64

Say = Callable[[str], None]


@dataclass(frozen=True)
class Row:
    """One line of the demo's table, measured on the test split."""

    name: str
    accuracy: float
    gflops_per_video: float
    videos_per_s: float
    model: str
    videos: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "accuracy": self.accuracy, "gflops_per_video": self.gflops_per_video, "videos_per_s": self.videos_per_s}


@dataclass
class DemoResult:
    num_classes: int
    labels: tuple[str, ...]
    val_videos: int
    test_videos: int
    rows: list[Row] = field(default_factory=list)
    thresholds: dict[str, list[float]] = field(default_factory=dict)  # row name -> eta_0..eta_T
    focus: dict[str, float] = field(default_factory=dict)
    int8: dict[str, float] = field(default_factory=dict)
    int8_float: dict[str, str] = field(default_factory=dict)  # graph role -> why it stayed (partly) in float
    files: dict[str, str] = field(default_factory=dict)
    bundles: dict[str, str] = field(default_factory=dict)
    data: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``videploy demo --json`` document: the table first, then what it came from."""
        return {
            "num_classes": self.num_classes,
            "rows": [r.to_dict() for r in self.rows],
            "test_videos": self.test_videos,
            "val_videos": self.val_videos,
            "thresholds": {k: [jsonsafe.encode_float(x) for x in v] for k, v in self.thresholds.items()},
            "focus": dict(self.focus),
            "int8": dict(self.int8),
            "int8_float": dict(self.int8_float),
            "files": dict(self.files),
            "bundles": dict(self.bundles),
            "data": self.data,
            "seconds": self.seconds,
        }


# --------------------------------------------------------------------------------------------
# Data and weights
# --------------------------------------------------------------------------------------------


def weights_path(name: str) -> Path:
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise VideployError(f"the shipped weights {path} are missing; reinstall videploy, or reproduce them with 'videploy train {name} --weights {path}'")
    return path


def data_key(seed: int = 0, splits: dict[str, int] | None = None, spec: actions.ActionVideoSpec | None = None) -> str:
    """Names the clips by everything that decides their pixels, so a changed generator never reuses stale ones."""
    h = hashlib.sha256(jsonsafe.dumps({"spec": asdict(spec or actions.ActionVideoSpec()), "seed": seed, "splits": splits or DEMO_SPLITS, "classes": actions.CLASSES}, sort_keys=True).encode())
    return h.hexdigest()[:12]


def demo_data(cache: str | Path | None = None, seed: int = 0, say: Say = lambda msg: None, progress: bool = True) -> Path:
    """The validation and test clips: reused from ``cache`` when complete, else generated there
    atomically (a half-written folder is never mistaken for a finished one)."""
    root = Path(cache) if cache is not None else cache_root()
    target = root / f"actions-{data_key(seed)}"
    if (target / "labels.txt").is_file() and all((target / f"{s}.csv").is_file() for s in DEMO_SPLITS):
        say(f"reusing the generated clips in {target}")
        return target
    root.mkdir(parents=True, exist_ok=True)
    say(f"generating {sum(DEMO_SPLITS.values())} clips into {target} (once; later runs reuse them)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        actions.generate(tmp, DEMO_SPLITS, seed=seed, progress=progress)
        if target.exists():  # another run finished first: keep its copy
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def export_trained(name: str, out: Path, data: Path, say: Say = lambda msg: None) -> Any:
    """Export zoo model ``name`` with its shipped weights into a verified bundle carrying the class
    names (the weights go in as a checkpoint, so the manifest records their file and hash)."""
    from videploy.export import export_bundle

    first_test = actions.read_split(data / "test.csv")[0][0]
    return export_bundle(
        name, out, checkpoint=weights_path(name), labels=data / "labels.txt", overwrite=True, video=first_test, verify_batch_sizes=(1, 2), progress=lambda m: say(f"  {m}")
    )


# --------------------------------------------------------------------------------------------
# Measuring one row
# --------------------------------------------------------------------------------------------


def measure(rec: Any, name: str, videos: Sequence[tuple[Path, int]], thresholds: Sequence[float] | None = None, progress: bool = True) -> tuple[Row, list[Any]]:
    """One pass of the runtime over ``videos`` (decoding included): accuracy, GFLOPs spent, videos/s."""
    from tqdm import tqdm

    paths = [str(p) for p, _ in videos]
    t0 = time.perf_counter()
    preds = list(tqdm(rec.iter_predict(paths, top_k=1, thresholds=thresholds, keep_display=False), total=len(paths), desc=name, unit="video", disable=not progress, leave=False))
    seconds = time.perf_counter() - t0
    labels = np.array([y for _, y in videos])
    top1 = np.array([p.top[0].index for p in preds])
    row = Row(
        name=name,
        accuracy=float((top1 == labels).mean()),
        gflops_per_video=float(np.mean([p.gflops for p in preds])),
        videos_per_s=len(preds) / seconds,
        model=rec.manifest.model_name,
        videos=len(preds),
    )
    return row, preds


def focus_hits(preds: Sequence[Any], videos: Sequence[tuple[Path, int]], boxes_json: Path, crop: int, resize_short: int, seed: int = 0) -> dict[str, float]:
    """How often a cube's box contains the acting object's centre in the cube's frame, against boxes of
    the same sizes placed uniformly at random in the same frames (the chance level), and how many
    videos' first cubes differ."""
    meta = actions.read_boxes(boxes_json)
    root = boxes_json.parent.resolve()
    rng = np.random.default_rng(seed)
    hit, chance, firsts = [], [], []
    for pred, (path, _) in zip(preds, videos):
        info = meta[Path(path).resolve().relative_to(root).as_posix()]
        cubes = pred.adaptive.cubes
        if not cubes:
            continue
        boxes = np.array([c.box for c in cubes])
        centres = actions.actor_centres(info, [c.frames[0] for c in cubes], resize_short, crop)
        hit.extend(actions.boxes_contain(boxes, centres))
        for (x1, y1, x2, y2), (cx, cy) in zip(boxes, centres):  # the same box sizes, placed uniformly
            w, h = x2 - x1, y2 - y1
            rx, ry = rng.uniform(0, crop - w, 64), rng.uniform(0, crop - h, 64)
            chance.append(float(((rx <= cx) & (cx <= rx + w) & (ry <= cy) & (cy <= ry + h)).mean()))
        firsts.append(cubes[0].box)
    first = np.asarray(firsts)
    distinct = len({tuple(np.round(b, 1)) for b in first}) / max(len(first), 1)
    return {"cubes_on_actor": float(np.mean(hit)), "random_boxes_on_actor": float(np.mean(chance)), "distinct_first_boxes": float(distinct)}


# --------------------------------------------------------------------------------------------
# The whole demo
# --------------------------------------------------------------------------------------------


def run_demo(
    out: str | Path,
    cache: str | Path | None = None,
    say: Say = lambda msg: None,
    progress: bool = True,
    threads: int | None = None,
    max_videos: int | None = None,
    int8: bool = True,
) -> DemoResult:
    """Everything ``videploy demo`` does (see the module docstring); files go under ``out``.
    ``max_videos``: only the first N validation and N test videos (quick runs); ``int8``: also
    quantize the AdaFocusV3 bundle and measure it."""
    from videploy.calibration.dynamic_evaluation import budget_search, dynamic_evaluation, fixed_exit_points
    from videploy.calibration.exit_curve import Curve, write_curve
    from videploy.calibration.exit_logits import collect_exit_logits
    from videploy.calibration.fit_on_videos import store_thresholds
    from videploy.calibration.int8.bundle import QuantizeOptions, quantize_bundle
    from videploy.runtime import load
    from videploy.runtime.visualize import write_visualization

    require("matplotlib", "videploy demo's accuracy-vs-GFLOPs plot")  # before minutes of work, not after
    require("torch", "videploy demo (it exports the trained models)")
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = {} if threads is None else {"threads": threads}

    if max_videos is not None and max_videos < len(actions.CLASSES):
        raise VideployError(f"max_videos must be at least {len(actions.CLASSES)} (one per class), got {max_videos}")
    say("[bold]1. data[/]: the generated action videos (validation and test splits)")
    data = demo_data(cache, say=lambda m: say(f"  {m}"), progress=progress)
    val, test = actions.read_split(data / "val.csv")[:max_videos], actions.read_split(data / "test.csv")[:max_videos]
    names = tuple(actions.CLASSES)

    say("[bold]2. export[/] the trained models to verified ONNX bundles")
    bundles: dict[str, Path] = {}
    for name in (ADAPTIVE_MODEL, *(n for n, _ in COMPARISON_MODELS)):
        t0 = time.perf_counter()
        bundles[name] = out / "bundles" / name
        export_trained(name, bundles[name], data)
        say(f"  {name} -> {bundles[name]} ({time.perf_counter() - t0:.1f} s)")

    rec = load(bundles[ADAPTIVE_MODEL], **options)
    ee = rec.manifest.early_exit
    cost = np.asarray(ee.exit_gflops)
    result = DemoResult(num_classes=rec.manifest.num_classes, labels=names, val_videos=len(val), test_videos=len(test), data=str(data))

    say(f"[bold]3. fit exit thresholds[/] on the {len(val)} validation videos (Eq. 7; the test split measures them)")
    val_logits = collect_exit_logits(rec, [str(p) for p, _ in val]).logits
    val_y = np.array([y for _, y in val])
    budgets: dict[float, tuple[float, ...]] = {}
    for frac in BUDGET_FRACTIONS:
        budget = round(float(cost[-1]) * frac, 4)
        # calibrate-exits' search on all the labelled validation videos: it fits each candidate and
        # keeps the most accurate within the budget (calibrate-exits itself holds half of them out
        # to report on; here the test split does that)
        chosen, _ = budget_search(val_logits, val_logits, val_y, cost, budget, criterion=ee.criterion)
        budgets[budget] = chosen.thresholds
        say(f"  budget {budget:g} GFLOPs ({frac:.0%} of all steps): validation accuracy {chosen.accuracy:.1%} at {chosen.gflops:.4g} GFLOPs")
    stored = list(budgets)[-1]
    store_thresholds(bundles[ADAPTIVE_MODEL], budgets[stored], ee.criterion)
    say(f"  stored the thresholds for {stored:g} GFLOPs in the bundle: 'videploy predict' uses them by default")
    rec.close()
    rec = load(bundles[ADAPTIVE_MODEL], **options)

    say(f"[bold]4. run[/] the torch-free runtime (onnxruntime) on the {len(test)} test videos, once per row")
    n_exits = ee.num_steps + 1
    inf = float("inf")
    glance_only = [inf] * n_exits
    all_steps = [-inf] * n_exits

    def row(recognizer: Any, name: str, thresholds: Sequence[float] | None) -> list[Any]:
        measured, preds = measure(recognizer, name, test, thresholds, progress)
        result.rows.append(measured)
        if thresholds is not None:
            result.thresholds[name] = [float(x) for x in thresholds]
        say(f"  {name:<32} accuracy {measured.accuracy:6.1%}   {measured.gflops_per_video:.4f} GFLOPs/video   {measured.videos_per_s:6.1f} videos/s")
        return preds

    # every video stops after exactly FEW_STEPS local steps: the policies compared at an equal, small budget
    few = FEW_STEPS if ee.num_steps > FEW_STEPS else ee.num_steps
    few_steps = [-inf] * few + [inf] * (n_exits - few)
    row(rec, "glance only", glance_only)
    all_preds = row(rec, "all steps", all_steps)
    with closing(load(bundles[ADAPTIVE_MODEL], policy="random", **options)) as random_rec:
        row(random_rec, "random policy, all steps", all_steps)
        row(rec, f"{few} steps", few_steps)
        row(random_rec, f"random policy, {few} steps", few_steps)
    exits_fp32 = {budget: [p.adaptive.exit_step for p in row(rec, f"early exit, budget {budget:g}", eta)] for budget, eta in budgets.items()}

    if int8:
        say(f"  INT8: quantizing the AdaFocusV3 bundle on {min(len(val), INT8_CALIBRATION_VIDEOS)} validation clips (ONNX Runtime QDQ, {INT8_VARIANT})")
        q = quantize_bundle(
            bundles[ADAPTIVE_MODEL],
            [str(p) for p, _ in val[:INT8_CALIBRATION_VIDEOS]],
            out / "bundles" / f"{ADAPTIVE_MODEL}-int8",
            # nothing is kept in float by hand: the chain check measures which graphs must stay FP32
            QuantizeOptions(targets=(INT8_VARIANT,), clips_per_video=1, max_clips=INT8_CALIBRATION_VIDEOS, progress=progress),
            overwrite=True,
        )
        for a in q.sensitivity:
            if not a.quantized_any or a.float_nodes:
                say(f"  stayed in float: graph '{a.graph}' ({'whole graph' if not a.quantized_any else ', '.join(a.float_groups)})")
                result.int8_float[a.graph] = a.reason()
        bundles[f"{ADAPTIVE_MODEL}-int8"] = q.bundle.root
        with closing(load(q.bundle, precision=INT8_VARIANT, **options)) as int8_rec:
            row(int8_rec, "all steps, int8", all_steps)
            for budget, eta in budgets.items():
                preds = row(int8_rec, f"early exit, budget {budget:g}, int8", eta)
                same = float(np.mean([a == p.adaptive.exit_step for a, p in zip(exits_fp32[budget], preds)]))
                result.int8[f"exit_step_agreement_budget_{budget:g}"] = same
                say(f"  {'':<32} the exit step agrees with FP32 for {same:.1%} of the test videos")
    for name, title in COMPARISON_MODELS:
        with closing(load(bundles[name], **options)) as other:
            row(other, title, None)
    result.bundles = {k: str(v) for k, v in bundles.items()}

    say("[bold]5. pictures[/]")
    pre = rec.manifest.preprocessing
    result.focus = focus_hits(all_preds, test, data / "test_boxes.json", pre.crop_size[0], pre.resize_short)
    test_logits = collect_exit_logits(rec, [str(p) for p, _ in test]).logits
    test_y = np.array([y for _, y in test])
    points = dynamic_evaluation(val_logits, test_logits, test_y, cost, criterion=ee.criterion)
    marks = tuple((r.name, r.gflops_per_video, r.accuracy) for r in result.rows if r.name not in ("glance only", "all steps"))
    curve = Curve(rec.manifest.model_name, ee.criterion, len(val), len(test), tuple(points), tuple(fixed_exit_points(test_logits, test_y, cost)), marks)
    paths = write_curve(curve, out / "exit_curve")
    result.files.update({f"curve_{k}": str(v) for k, v in paths.items()})
    shown = rec.predict_batch([str(p) for p, _ in test[:CUBE_DRAWINGS]], top_k=1, thresholds=all_steps)
    for i, pred in enumerate(shown):
        result.files[f"cubes_{i}"] = str(write_visualization(pred, out / f"cubes_{i}.png"))
    rec.close()
    result.seconds = time.perf_counter() - t_start
    (out / "demo.json").write_text(jsonsafe.dumps(result.to_dict(), indent=2))
    result.files["json"] = str(out / "demo.json")
    return result
