"""Every full-size official state-dict manifest loads strictly into its zoo model via load_checkpoint.

``shared/reference/manifests/<name>.shapes.json`` lists every key and shape of an official
full-size model (no weights). For each we write a checkpoint the way the official training code
does ({"model": sd} for Video-FocalNet / STAM; AdaFocus' {"epoch", "best_acc1", "state_dict" with
DistributedDataParallel's "module." keys, "optimizer"}), save it with torch.save and load the file.

Two variants:
* keys and shapes, on the meta device (tensors without data: a file of a few KB, a model without
  memory) — every manifest, in CI;
* real random values on the CPU, compared after loading — the full file round trip at full size
  (hundreds of MB per model), one model per family in CI, the rest marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import videploy.models as vm
from videploy.models.adafocusv3 import DROPPED_PREFIXES
from videploy.models.checkpoint import load_checkpoint

# manifest -> (zoo name, overrides)
ZOO_OF_MANIFEST: dict[str, tuple[str, dict[str, Any]]] = {
    "videofocalnet_tiny_k400": ("video_focalnet_tiny", {}),
    "videofocalnet_small_k400": ("video_focalnet_small", {}),
    "videofocalnet_base_k400": ("video_focalnet_base", {}),
    "videofocalnet_base_ssv2": ("video_focalnet_base", {"num_classes": 174}),
    "stam_16": ("stam_16", {}),
    "stam_32": ("stam_32", {}),
    "stam_64": ("stam_64", {}),
    "uniadafocus_actnet_full": ("adafocusv3_mbv2_r50", {}),
}
# One per family runs the full-size value round trip in CI (the smallest of each); the rest are slow.
IN_CI = {"videofocalnet_tiny_k400", "stam_16", "uniadafocus_actnet_full"}


def _index(ref_dir: Path) -> dict[str, Any]:
    return json.loads((ref_dir / "manifests" / "index.json").read_text())


def _shapes(ref_dir: Path, name: str) -> dict[str, list[int]]:
    entry = _index(ref_dir)[name]
    return json.loads((ref_dir / "manifests" / entry["file"]).read_text())


def _dtype(key: str) -> torch.dtype:
    # the index: the only non-float32 entries are BatchNorm's num_batches_tracked (int64 scalars)
    return torch.int64 if key.endswith("num_batches_tracked") else torch.float32


def _synthetic(shapes: dict[str, list[int]], device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if device == "meta":
            out[key] = torch.empty(shape, dtype=_dtype(key), device="meta")
        elif _dtype(key) == torch.int64:
            out[key] = torch.randint(0, 1000, shape, generator=gen, dtype=torch.int64)
        else:
            out[key] = torch.randn(shape, generator=gen)
    return out


def _official_container(name: str, sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    if name.startswith("uniadafocus"):
        # main.py's save_checkpoint; the model is wrapped in DistributedDataParallel
        return {"epoch": 50, "best_acc1": np.float64(77.3), "state_dict": {"module." + k: v for k, v in sd.items()}, "optimizer": {"state": {}, "param_groups": []}}
    return {"model": sd, "epoch": 30, "max_accuracy": 80.1}


def test_every_manifest_has_a_zoo_model(ref_dir):
    index = _index(ref_dir)
    assert set(index) == set(ZOO_OF_MANIFEST), "a new reference manifest needs an entry in ZOO_OF_MANIFEST"
    for zoo, _ in ZOO_OF_MANIFEST.values():
        assert zoo in vm.available()


@pytest.mark.parametrize("name", sorted(ZOO_OF_MANIFEST))
def test_manifest_keys_and_shapes_load_strictly(ref_dir, tmp_path, name):
    shapes = _shapes(ref_dir, name)
    assert len(shapes) == _index(ref_dir)[name]["num_state_dict_entries"]
    zoo, overrides = ZOO_OF_MANIFEST[name]
    with torch.device("meta"):
        model = vm.create(zoo, **overrides)
    path = tmp_path / f"{name}.pth"
    torch.save(_official_container(name, _synthetic(shapes, "meta")), path)

    report = load_checkpoint(model, path)

    dropped = {k for k in shapes if k.startswith(DROPPED_PREFIXES)} if name.startswith("uniadafocus") else set()
    assert set(report.dropped_keys) == dropped
    assert report.num_tensors == len(model.state_dict()) == len(shapes) - len(dropped)
    assert report.unwrapped == (("['state_dict']", "prefix 'module.'") if name.startswith("uniadafocus") else ("['model']",))
    # the manifest's element count, less what convert drops, is exactly the model's
    own = {k: v for k, v in shapes.items() if k not in dropped}
    assert sum(int(np.prod(s)) for s in own.values()) == sum(v.numel() for v in model.state_dict().values())


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in IN_CI else pytest.mark.slow) for n in sorted(ZOO_OF_MANIFEST)])
def test_manifest_weights_round_trip(ref_dir, tmp_path, name):
    shapes = _shapes(ref_dir, name)
    zoo, overrides = ZOO_OF_MANIFEST[name]
    model = vm.create(zoo, **overrides)
    sd = _synthetic(shapes, "cpu", seed=1)
    path = tmp_path / f"{name}.pth"
    torch.save(_official_container(name, sd), path)

    report = load_checkpoint(model, path)

    loaded = model.state_dict()
    assert report.num_tensors == len(loaded)
    for key, value in loaded.items():
        assert value.dtype == sd[key].dtype, key
        assert torch.equal(value, sd[key]), key
