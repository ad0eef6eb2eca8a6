"""``videploy demo``: the README's main job, end to end (real export, real videos, runtime predict)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from videploy.cli import main
from videploy.runtime.samples import write_synthetic_video


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "RANDOM weights" in text and "--model" in text


def test_default_demo_adafocus(capsys, tmp_path):
    t0 = time.perf_counter()
    assert main(["demo", "--out", str(tmp_path)]) == 0
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "RANDOM WEIGHTS" in out and "random weights" in out.lower()
    assert "verified against PyTorch: passed" in out
    assert "demonstration of Eq. 7" in out and "exit " in out and "GFLOPs" in out
    assert (tmp_path / "bundle" / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.glob("focus*.png"))  # the cubes were drawn
    print(f"default demo took {elapsed:.1f} s")
    assert elapsed < 120, "the demo must stay well under a minute on an idle 2-core machine"


def test_video_focalnet_demo_and_torch_reference(capsys, tmp_path):
    video = write_synthetic_video(tmp_path / "clip.mp4", 48, (90, 120), pattern="moving")
    assert main(["demo", "--model", "video_focalnet", "--video", str(video), "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert str(video) in out.replace("\n", "") and "RANDOM WEIGHTS" in out
    bundle = tmp_path / "d" / "bundle"
    # the bundle from the demo runs the same on the PyTorch reference backend (rebuilt from the manifest)
    docs = {}
    for backend in ("onnxruntime", "torch"):
        assert main(["predict", str(bundle), str(video), "--json", "--backend", backend, "--top-k", "10"]) == 0
        docs[backend] = json.loads(capsys.readouterr().out)
    a, b = (docs[k]["results"][0]["top"] for k in ("onnxruntime", "torch"))
    assert [t["index"] for t in a] == [t["index"] for t in b]
    np.testing.assert_allclose([t["probability"] for t in a], [t["probability"] for t in b], rtol=1e-4)
