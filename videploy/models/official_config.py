"""Build a model from an official training configuration file (YAML).

Supported: the Video-FocalNet configs (``configs/<dataset>/video-focalnet_*.yaml`` of
TalalWasim/Video-FocalNets). Such a file is merged over the defaults of the official
``config.py`` exactly as the official loader does: files listed under ``BASE:`` (paths relative
to the including file) are merged first, recursively, then the file itself; a key the defaults do
not define is an error (only ``MODEL.SPEC`` takes new keys); a string value is read as a Python
literal when it is one (so ``1e-4``, which YAML reads as a string, is a number).

The model is then built the way the official ``build_model`` builds it: ``MODEL.TYPE`` picks the
factory (``videofocalnet_tiny`` / ``_small`` / ``_base``), which fixes ``embed_dim`` and ``depths``;
``DATA.IMG_SIZE``, ``DATA.NUM_FRAMES``, ``MODEL.NUM_CLASSES``, ``MODEL.DROP_PATH_RATE``,
``MODEL.TUBELET_SIZE`` and ``MODEL.FOCAL.{FOCAL_LEVELS, FOCAL_WINDOWS, USE_CONV_EMBED,
USE_LAYERSCALE, USE_POSTLN, USE_POSTLN_IN_MODULATION, NORMALIZE_MODULATOR}`` are passed on; every
other architecture key keeps the constructor default. Where a file explicitly sets an
architecture key that the official build ignores (``MODEL.FOCAL.EMBED_DIM: 192`` for
``videofocalnet_base``, ``MODEL.FOCAL.PATCH_SIZE``, ...) to a value the official model would
not have, this module refuses rather than silently building a different model than the file
reads; pass the keyword override to build it anyway.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from videploy.errors import VideployError
from videploy.optional import require

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

# Every key of the official config.py with its default (the schema a file is merged into).
_NONE = object()  # a default of None: any value type is accepted
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "BASE": [""],
    "DATA.ROOT": "/PATH/TO/videos",
    "DATA.TRAIN_FILE": "/PATH/TO/train.txt",
    "DATA.VAL_FILE": "/PATH/TO/val.txt",
    "DATA.NUM_FRAMES": 32,
    "DATA.NUM_CLASSES": 101,
    "DATA.LABEL_LIST": "labels/ucf_101_labels.csv",
    "DATA.BATCH_SIZE": 128,
    "DATA.DATA_PATH": "",
    "DATA.DATASET": "imagenet",
    "DATA.IMG_SIZE": 224,
    "DATA.INPUT_SIZE": 224,
    "DATA.INTERPOLATION": "bicubic",
    "DATA.ZIP_MODE": False,
    "DATA.CACHE_MODE": "part",
    "DATA.PIN_MEMORY": True,
    "DATA.NUM_WORKERS": 8,
    "MODEL.TYPE": "focal",
    "MODEL.NAME": "",
    "MODEL.RESUME": "",
    "MODEL.NUM_CLASSES": 1000,
    "MODEL.DROP_RATE": 0.0,
    "MODEL.DROP_PATH_RATE": 0.1,
    "MODEL.LABEL_SMOOTHING": 0.1,
    "MODEL.PRETRAINED": False,
    "MODEL.FOCAL.PATCH_SIZE": 4,
    "MODEL.FOCAL.IN_CHANS": 3,
    "MODEL.FOCAL.EMBED_DIM": 96,
    "MODEL.FOCAL.DEPTHS": [2, 2, 6, 2],
    "MODEL.FOCAL.MLP_RATIO": 4.0,
    "MODEL.FOCAL.PATCH_NORM": True,
    "MODEL.FOCAL.FOCAL_LEVELS": [2, 2, 2, 2],
    "MODEL.FOCAL.FOCAL_WINDOWS": [3, 3, 3, 3],
    "MODEL.FOCAL.FOCAL_FACTORS": [2, 2, 2, 2],
    "MODEL.FOCAL.USE_CONV_EMBED": False,
    "MODEL.FOCAL.USE_LAYERSCALE": False,
    "MODEL.FOCAL.USE_POSTLN": False,
    "MODEL.FOCAL.USE_POSTLN_IN_MODULATION": False,
    "MODEL.FOCAL.NORMALIZE_MODULATOR": False,
    "MODEL.TUBELET_SIZE": 1,
    "TRAIN.START_EPOCH": 0,
    "TRAIN.EPOCHS": 300,
    "TRAIN.WARMUP_EPOCHS": 20,
    "TRAIN.WEIGHT_DECAY": 0.05,
    "TRAIN.BASE_LR": 5e-4,
    "TRAIN.WARMUP_LR": 5e-7,
    "TRAIN.MIN_LR": 5e-6,
    "TRAIN.CLIP_GRAD": 5.0,
    "TRAIN.AUTO_RESUME": True,
    "TRAIN.ACCUMULATION_STEPS": 0,
    "TRAIN.USE_CHECKPOINT": False,
    "TRAIN.LR_SCHEDULER.NAME": "cosine",
    "TRAIN.LR_SCHEDULER.DECAY_EPOCHS": 30,
    "TRAIN.LR_SCHEDULER.DECAY_RATE": 0.1,
    "TRAIN.OPTIMIZER.NAME": "adamw",
    "TRAIN.OPTIMIZER.EPS": 1e-8,
    "TRAIN.OPTIMIZER.BETAS": (0.9, 0.999),
    "TRAIN.OPTIMIZER.MOMENTUM": 0.9,
    "TRAIN.PRETRAINED_PATH": "",
    "AUG.COLOR_JITTER": 0.4,
    "AUG.AUTO_AUGMENT": "rand-m9-mstd0.5-inc1",
    "AUG.REPROB": 0.25,
    "AUG.REMODE": "pixel",
    "AUG.RECOUNT": 1,
    "AUG.MIXUP": 0.8,
    "AUG.CUTMIX": 1.0,
    "AUG.CUTMIX_MINMAX": _NONE,
    "AUG.MIXUP_PROB": 1.0,
    "AUG.MIXUP_SWITCH_PROB": 0.5,
    "AUG.MIXUP_MODE": "batch",
    "AUG.GRAY_SCALE": 0.2,
    "AUG.FLIP_RATIO": 0.5,
    "AUG.FRAME_INTERVAL": 2,
    "AUG.LABEL_SMOOTH": 0.1,
    "TEST.CROP": True,
    "TEST.NUM_CLIP": 1,
    "TEST.NUM_CROP": 1,
    "TEST.ONLY_TEST": False,
    "AMP_OPT_LEVEL": "",
    "OUTPUT": "",
    "TAG": "default",
    "SAVE_FREQ": 1,
    "PRINT_FREQ": 100,
    "SEED": 0,
    "EVAL_MODE": False,
    "THROUGHPUT_MODE": False,
    "DEBUG_MODE": False,
    "LOCAL_RANK": 0,
}
# Sections that are mappings in the schema; MODEL.SPEC accepts any keys.
_SECTIONS = {k.rsplit(".", i)[0] for k in OFFICIAL_DEFAULTS for i in range(1, k.count(".") + 1)} | {"MODEL.SPEC"}
_OPEN_SECTIONS = ("MODEL.SPEC",)

# The official factories (classification/videofocalnet.py) and the kwargs each one fixes.
FACTORIES: dict[str, dict[str, Any]] = {
    "videofocalnet_tiny": {"embed_dim": 96, "depths": [2, 2, 6, 2]},
    "videofocalnet_small": {"embed_dim": 96, "depths": [2, 2, 18, 2]},
    "videofocalnet_base": {"embed_dim": 128, "depths": [2, 2, 18, 2]},
}
# YAML keys the official build_model passes to the factory -> VideoFocalNet kwarg.
_PASSED = {
    "DATA.IMG_SIZE": "img_size",
    "MODEL.NUM_CLASSES": "num_classes",
    "MODEL.DROP_PATH_RATE": "drop_path_rate",
    "MODEL.FOCAL.FOCAL_LEVELS": "focal_levels",
    "MODEL.FOCAL.FOCAL_WINDOWS": "focal_windows",
    "MODEL.FOCAL.USE_CONV_EMBED": "use_conv_embed",
    "MODEL.FOCAL.USE_LAYERSCALE": "use_layerscale",
    "MODEL.FOCAL.USE_POSTLN": "use_postln",
    "MODEL.FOCAL.USE_POSTLN_IN_MODULATION": "use_postln_in_modulation",
    "MODEL.FOCAL.NORMALIZE_MODULATOR": "normalize_modulator",
    "DATA.NUM_FRAMES": "num_frames",
    "MODEL.TUBELET_SIZE": "tubelet_size",
}
# Architecture keys the official build ignores -> (kwarg, value the official model has, or None
# when the value comes from the factory).
_IGNORED = {
    "MODEL.FOCAL.EMBED_DIM": ("embed_dim", None),
    "MODEL.FOCAL.DEPTHS": ("depths", None),
    "MODEL.FOCAL.PATCH_SIZE": ("patch_size", 4),
    "MODEL.FOCAL.IN_CHANS": ("in_chans", 3),
    "MODEL.FOCAL.MLP_RATIO": ("mlp_ratio", 4.0),
    "MODEL.FOCAL.PATCH_NORM": ("patch_norm", True),
    # not a model option at all: the modulation hard-codes a kernel growth of 2
    "MODEL.FOCAL.FOCAL_FACTORS": (None, [2, 2, 2, 2]),
}


def _fail(path: Path, message: str) -> VideployError:
    return VideployError(f"official config {path}: {message}")


def _decode(value: Any) -> Any:
    # the official (yacs) loader reads strings as Python literals where possible
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _coerce(path: Path, key: str, value: Any, default: Any) -> Any:
    """The value if it has the default's type (ints pass for floats, lists for tuples), else an error."""
    if default is _NONE or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        names = {bool: "a bool", int: "an int", float: "a number", list: "a list", tuple: "a list", str: "a string"}
        what = names.get(type(default), type(default).__name__)
        raise _fail(path, f"{key} must be {what} like the official default {default!r}, got {value!r}")
    return value


def _merge(path: Path, data: Mapping[str, Any], prefix: str, cfg: dict[str, Any], explicit: set[str]) -> None:
    for key, value in data.items():
        full = f"{prefix}{key}"
        if not isinstance(key, str):
            raise _fail(path, f"key {key!r} under {prefix[:-1] or 'the top level'} is not a string")
        if prefix[:-1] in _OPEN_SECTIONS or any(full.startswith(s + ".") for s in _OPEN_SECTIONS):
            cfg[full] = value
            explicit.add(full)
            continue
        if full in _SECTIONS:
            if not isinstance(value, Mapping):
                raise _fail(path, f"{full} is a section of the official config and must be a mapping, got {value!r}")
            _merge(path, value, full + ".", cfg, explicit)
            continue
        if full not in OFFICIAL_DEFAULTS:
            import difflib

            close = difflib.get_close_matches(full, OFFICIAL_DEFAULTS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _fail(path, f"unknown key {full}{hint}; the official loader rejects keys that config.py does not define")
        cfg[full] = _coerce(path, full, _decode(value), OFFICIAL_DEFAULTS[full])
        explicit.add(full)


def _read_yaml(path: Path) -> dict[str, Any]:
    yaml = require("yaml", "reading official YAML configs")
    if not path.is_file():
        raise VideployError(f"official config {path} does not exist (or is not a file); pass the path of an official configs/*/*.yaml file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _fail(path, f"is not a valid YAML file ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(path, f"must be a YAML mapping of config sections (DATA:, MODEL:, ...), got a {type(data).__name__}")
    return data


def _load(path: Path, cfg: dict[str, Any], explicit: set[str], chain: tuple[Path, ...]) -> None:
    real = path.resolve()
    if real in chain:
        raise _fail(path, f"BASE inheritance loops: {' -> '.join(str(p) for p in chain + (real,))}")
    data = _read_yaml(path)
    bases = data.get("BASE", [""])
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise _fail(path, f"BASE must be a list of config file names, got {bases!r}")
    for base in bases:
        if base:
            _load(Path(os.path.join(path.parent, base)), cfg, explicit, chain + (real,))
    _merge(path, data, "", cfg, explicit)


def read_official_config(path: str | os.PathLike[str]) -> tuple[dict[str, Any], set[str]]:
    """The merged official config as dotted keys -> values, and the keys some file set explicitly."""
    cfg = {k: (None if v is _NONE else v) for k, v in OFFICIAL_DEFAULTS.items()}
    explicit: set[str] = set()
    _load(Path(path), cfg, explicit, ())
    return cfg, explicit


def official_kwargs(path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
    """(VideoFocalNet kwargs, EvalProtocol) the official code derives from a config file."""
    from videploy.models.video_focalnet import EvalProtocol

    path = Path(path)
    overrides = dict(overrides or {})
    cfg, explicit = read_official_config(path)
    model_type = cfg["MODEL.TYPE"]
    if model_type not in FACTORIES:
        raise _fail(
            path,
            f"MODEL.TYPE {model_type!r} is not a Video-FocalNet model; the official factories are {sorted(FACTORIES)} "
            "(STAM and AdaFocusV3 have no YAML configs; build them with videploy.models.create)",
        )
    kwargs: dict[str, Any] = dict(FACTORIES[model_type])
    for key, kwarg in _PASSED.items():
        kwargs[kwarg] = cfg[key]
    for key, (kwarg, official_value) in _IGNORED.items():
        if key not in explicit or (kwarg is not None and kwarg in overrides):
            continue
        official = FACTORIES[model_type][kwarg] if official_value is None else official_value
        value = cfg[key]
        if value != official:
            how = f"or pass {kwarg}={value!r} to build that (unofficial) model anyway" if kwarg else "the official model has no such option"
            raise _fail(
                path,
                f"{key} is {value!r}, but the official build_model ignores it and builds {model_type} with "
                f"{kwarg or 'a focal factor'} = {official!r}; remove the key or make it {official!r}, {how}",
            )
    # DATA.INPUT_SIZE is the crop the official data pipeline feeds; it only differs from the
    # model's img_size when a file says so (and a size override replaces both)
    input_size = cfg["DATA.INPUT_SIZE"]
    resized = "img_size" in overrides or "image_size" in overrides
    protocol = EvalProtocol(
        frame_interval=int(cfg["AUG.FRAME_INTERVAL"]),
        # the published numbers use 4 clips x 3 crops; a file that sets the views wins
        num_clips=int(cfg["TEST.NUM_CLIP"]) if "TEST.NUM_CLIP" in explicit else EvalProtocol.num_clips,
        num_crops=int(cfg["TEST.NUM_CROP"]) if "TEST.NUM_CROP" in explicit else EvalProtocol.num_crops,
        input_size=None if resized or input_size == kwargs["img_size"] else int(input_size),
    )
    kwargs.update(overrides)
    return kwargs, protocol


def from_official_config(path: str | os.PathLike[str], **overrides: Any) -> "nn.Module":
    """A Video-FocalNet built (in eval mode) from an official YAML config, as the official code builds it.

    ``overrides`` are official ``VideoFocalNet`` keyword arguments (or the registry aliases
    ``num_frames`` / ``image_size``) and win over the file, e.g.
    ``from_official_config("video-focalnet_base.yaml", num_classes=10)``. The model's
    ``preprocessing()`` follows the file's ``AUG.FRAME_INTERVAL``, ``DATA.INPUT_SIZE`` and, when the
    file sets them, ``TEST.NUM_CLIP`` / ``TEST.NUM_CROP``.
    """
    from videploy.models.registry import create

    kwargs, protocol = official_kwargs(path, overrides)
    model = create("video_focalnet", **kwargs)
    model.eval_protocol = protocol
    return model
