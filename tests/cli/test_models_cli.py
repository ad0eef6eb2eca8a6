"""``videploy models``: the zoo listing, in-process through videploy.cli.main and once as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import videploy.models as vm
from videploy.cli import main
from videploy.cli.models import zoo_names

# Independent parameter counts: the official models' state dicts (shared/reference/manifests/index.json).
OFFICIAL_MANIFEST = {
    "video_focalnet_tiny": "videofocalnet_tiny_k400",
    "video_focalnet_small": "videofocalnet_small_k400",
    "video_focalnet_base": "videofocalnet_base_k400",
    "stam_16": "stam_16",
    "stam_32": "stam_32",
    "stam_64": "stam_64",
    "adafocusv3_mbv2_r50": "uniadafocus_actnet_full",
}


def run_json(capsys, *args: str) -> dict:
    assert main(["models", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_every_zoo_model(capsys):
    doc = run_json(capsys, "--no-flops")
    names = [m["name"] for m in doc["models"]]
    assert sorted(names) == vm.available()  # every zoo name, no family, no component
    for m in doc["models"]:
        assert m["family"] == vm.get(m["name"]).family.name
        assert m["gflops"] is None and m["exit_gflops"] is None  # --no-flops
        assert m["inputs"][0]["name"] == "video" and m["inputs"][0]["shape"][0] == 1
        assert m["description"]


def test_parameter_counts_match_real_modules(capsys, ref_dir):
    params = {m["name"]: m["parameters"] for m in run_json(capsys, "--no-flops")["models"]}
    # a real (CPU) module
    real = vm.create("video_focalnet_tiny")
    assert params["video_focalnet_tiny"] == sum(p.numel() for p in real.parameters())
    # the official models, from the reference manifests (AdaFocusV3 less the training-only heads ours drops)
    from videploy.models.adafocusv3 import DROPPED_PREFIXES

    index = json.loads((ref_dir / "manifests" / "index.json").read_text())
    for name, manifest in OFFICIAL_MANIFEST.items():
        expected = index[manifest]["num_parameters"]
        if name.startswith("adafocusv3"):
            shapes = json.loads((ref_dir / "manifests" / index[manifest]["file"]).read_text())
            expected -= sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith(DROPPED_PREFIXES))
        assert params[name] == expected, name


def test_gflops_are_counted(capsys):
    doc = run_json(capsys, "video_focalnet_tiny", "adafocusv3_mbv2_r50")
    vfn, ada = doc["models"]
    assert vfn["gflops"] == pytest.approx(63.0, abs=0.5)  # Video-FocalNet-T: 63 GFLOPs per view (paper)
    eg = ada["exit_gflops"]
    assert len(eg) == 16 + 1 and eg == sorted(eg) and ada["gflops"] == eg[-1]
    # Independent figures: the official Uni-AdaFocus cost constants (GMACs) for MobileNetV2 features on a
    # 224x224 frame (0.2995) and ResNet-50 features on a 128x128 patch (1.3346), plus the 4096-wide MLPs
    # and the heads (200 classes): glance = 16 frames; each local step = one patch.
    glance = 16 * (0.2995 + 1280 * 4096 / 1e9) + 4096 * 200 / 1e9
    step = 1.3346 + 2048 * 4096 / 1e9 + 2 * 4096 * 200 / 1e9
    assert eg[0] == pytest.approx(glance, rel=0.01)
    steps = np.diff(eg[1:])
    assert np.allclose(steps, steps[0]) and steps[0] == pytest.approx(step, rel=0.01)


def test_table_output(capsys):
    assert main(["models", "--no-flops"]) == 0
    out = capsys.readouterr().out
    for name in zoo_names():
        assert name in out
    assert "(B,T,C,H,W)" in out


def test_families_listing(capsys):
    doc = run_json(capsys, "--no-flops", "--families", "stam_16")
    fams = {f["name"]: f for f in doc["families"]}
    assert set(fams) == set(vm.families(include_components=True))
    assert fams["video_focalnet"]["kwargs"]["depths"] == [2, 2, 6, 2]
    assert "stam_16" in fams["stam"]["zoo"]
    assert fams["resnet"]["component"] and fams["resnet"]["required"] == ["block", "layers"]


def test_unknown_name_is_a_clean_error(capsys):
    assert main(["models", "stam_17"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'stam_17'" in err and "Traceback" not in err


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["models", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--no-flops" in out and "--json" in out and "meta" in out


def test_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "videploy", "models", "--json", "--no-flops", "stam_16"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    (m,) = json.loads(proc.stdout)["models"]
    assert m["name"] == "stam_16" and m["family"] == "stam" and m["inputs"][0]["shape"] == [1, 16, 3, 224, 224]
