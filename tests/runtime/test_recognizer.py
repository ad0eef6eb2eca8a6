"""The recognizer API on real videos: predictions, views, labels, adaptive traces, errors."""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np
import pytest
import torch

from tests.runtime.toys import EXIT_GFLOPS, TF, static_bundle
from videploy import runtime
from videploy.errors import VideployError
from videploy.runtime.samples import (
    sample_video_path,
    synthetic_frames,
    write_synthetic_video,
)
from videploy.runtime.video import decode_views


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def torch_probs(model, views: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return softmax(model(torch.from_numpy(views)).double().numpy())


def test_static_prediction_on_a_real_video(static_dir, toy_static):
    rec = runtime.load(static_dir, threads=1)
    path = sample_video_path()
    p = rec.predict(path, top_k=3)
    ref = torch_probs(toy_static, decode_views(path, rec.manifest.preprocessing))[0]
    np.testing.assert_allclose(p.probabilities, ref, rtol=1e-5, atol=1e-6)
    assert [c.index for c in p.top] == list(np.argsort(-ref)[:3])
    assert p.top[0].probability >= p.top[1].probability >= p.top[2].probability
    assert p.gflops == pytest.approx(0.01) and p.views == (1, 1) and p.num_frames == 250
    assert p.random_weights and "random weights" in p.notes[0]
    assert p.adaptive is None and p.source == str(path)


def test_multi_view_averages_softmax(static_dir, toy_static):
    rec = runtime.load(static_dir, threads=1)
    path = sample_video_path()
    p = rec.predict(path, views="2x3")
    views = decode_views(path, rec.manifest.preprocessing, num_clips=2, num_crops=3)
    ref = torch_probs(toy_static, views).mean(axis=0)  # Video-FocalNet's evaluation: mean of softmax
    np.testing.assert_allclose(p.probabilities, ref, rtol=1e-5, atol=1e-6)
    assert p.views == (2, 3) and p.frame_indices.shape == (2, 4) and p.gflops == pytest.approx(0.06)
    assert rec.views("official") == (2, 3)  # the toy's manifest records a 2x3 protocol
    with pytest.raises(VideployError, match="CLIPSxCROPS"):
        rec.predict(path, views="2by3")
    with pytest.raises(VideployError, match="crops 1 \\(centre\\) or 3"):
        rec.predict(path, views=(1, 2))


def test_batch_matches_single_and_keeps_order(tmp_path, static_dir):
    rec = runtime.load(static_dir, threads=1)
    inputs = [
        sample_video_path(),
        write_synthetic_video(tmp_path / "a.mp4", 40, (48, 64), pattern="moving"),
        synthetic_frames(12, (30, 40), "moving"),
        write_synthetic_video(tmp_path / "b.avi", 3, (20, 20)),
    ]
    singles = [rec.predict(x, views="1x3") for x in inputs]
    batch = rec.predict_batch(inputs, views="1x3", batch_size=2)
    for s, b in zip(singles, batch):
        assert s.source == b.source
        np.testing.assert_allclose(s.probabilities, b.probabilities, rtol=1e-5, atol=1e-7)
    assert batch[2].source.startswith("<array (12, 30, 40, 3)")
    assert "fewer than the 4" in " ".join(batch[3].notes)


def test_labels_from_bundle_and_call(tmp_path, toy_static):
    names = [f"action {i}" for i in range(7)]
    d = static_bundle(tmp_path / "b", toy_static, labels=names)
    rec = runtime.load(d, threads=1)
    p = rec.predict(sample_video_path(), top_k=7)
    assert [c.label for c in p.top] == [names[c.index] for c in p.top]
    # id,name CSV (Video-FocalNet's format), with and without a header, ids in any order
    for header in ("id,name\n", ""):
        csv = tmp_path / f"labels{len(header)}.csv"
        csv.write_text(header + "".join(f"{i},name, with comma {i}\n" for i in reversed(range(7))))
        p = runtime.load(d, labels=csv, threads=1).predict(sample_video_path(), top_k=2)
        assert p.top[0].label == f"name, with comma {p.top[0].index}"
    bad = tmp_path / "short.txt"
    bad.write_text("a\nb\n")
    with pytest.raises(VideployError, match="has 2 class names, but the model has 7 classes"):
        runtime.load(d, labels=bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("0,a\n0,b\n")
    with pytest.raises(VideployError, match="lists class id 0 twice"):
        runtime.load(d, labels=dup)
    with pytest.raises(VideployError, match="does not exist"):
        runtime.load(d, labels=tmp_path / "nope.txt")


def test_top_k_and_argument_errors(static_dir):
    rec = runtime.load(static_dir, threads=1)
    assert len(rec.predict(sample_video_path(), top_k=50).top) == 7
    with pytest.raises(VideployError, match="top_k must be >= 1"):
        rec.predict(sample_video_path(), top_k=0)
    with pytest.raises(VideployError, match="apply to adaptive"):
        rec.predict(sample_video_path(), thresholds=[0.0])
    assert len(rec.predict_batch([sample_video_path()] * 2, batch_size=9)) == 2  # batch-dynamic graphs: past the profile maximum
    with pytest.raises(VideployError, match="between 1 and the bundle's maximum 1024"):
        rec.predict_batch([sample_video_path()], batch_size=2000)


def test_adaptive_prediction_reports_exit_cubes_and_cost(adaptive_dir, toy_adafocus):
    rec = runtime.load(adaptive_dir, threads=1)
    path = sample_video_path()
    full = rec.predict(path)
    assert full.adaptive.exit_step == TF and full.gflops == EXIT_GFLOPS[TF]
    assert "no exit thresholds" in " ".join(full.notes)
    assert not full.random_weights  # the toy bundle records a checkpoint
    views = decode_views(path, rec.manifest.preprocessing)
    ref = toy_adafocus.full_exits(torch.from_numpy(views)).double().numpy()[0]
    np.testing.assert_allclose(full.probabilities, softmax(ref[TF]), rtol=1e-5, atol=1e-6)
    for cube in full.adaptive.cubes:
        assert cube.frames == tuple(int(full.frame_indices[0][s]) for s in cube.sampled)
        x1, y1, x2, y2 = cube.box
        assert 0 <= x1 < x2 <= 16 and 0 <= y1 < y2 <= 16
    # stop after the first local step: eta_1 = inf
    one = rec.predict(path, thresholds=[-math.inf, math.inf, -math.inf, -math.inf])
    assert one.adaptive.exit_step == 1 and one.gflops == EXIT_GFLOPS[1] and len(one.adaptive.cubes) == 1
    np.testing.assert_allclose(one.probabilities, softmax(ref[1]), rtol=1e-5, atol=1e-6)
    d = one.to_dict()
    json.dumps(d)
    assert d["adaptive"]["exit_step"] == 1 and d["adaptive"]["thresholds"][0] == "-inf"
    with pytest.raises(VideployError, match="one view per video"):
        rec.predict(path, views="2x1")


def test_torch_reference_backend_through_load(static_dir, toy_static):
    from videploy.export.torch_backend import TorchBackend

    path = sample_video_path()
    a = runtime.load(static_dir, threads=1).predict(path, views="1x3")
    b = runtime.load(static_dir, backend=partial(TorchBackend, model=toy_static)).predict(path, views="1x3")
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-5, atol=1e-7)


def test_missing_bundle():
    with pytest.raises(VideployError, match="does not exist"):
        runtime.load("/nonexistent/bundle")
