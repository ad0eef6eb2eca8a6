"""Every real family, exported by ``videploy.export`` at a small configuration: the runtime's
predictions on real videos equal PyTorch's on the same decoded frames, and AdaFocusV3's early
exits equal the full model's logits at the exit taken, with exactly the work that exit costs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from videploy import runtime
from videploy.runtime.samples import sample_video_path, write_synthetic_video
from videploy.runtime.video import decode_views

# Small configurations (official keyword names) that export in seconds on 2 CPU cores.
SMALL = {
    "video_focalnet": ("video_focalnet", dict(img_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_classes=7)),
    "stam": ("stam_8", dict(img_size=32, embed_dim=32, depth=1, num_heads=2, num_classes=7, aggregate={"clip_length": 8, "embed_dim": 32, "n_layers": 1})),
    "adafocusv3": ("adafocusv3", dict(num_segments=8, num_glance_segments=4, num_focus_segments=3, num_classes=7, patch_size=64)),
}
# export verifies to ~1e-5 relative on logits; probabilities are compared a little looser
RTOL, ATOL = 1e-4, 1e-6


@pytest.fixture(scope="module", params=sorted(SMALL))
def family_bundle(request, tmp_path_factory):
    from videploy.export.api import export_bundle
    from videploy.models import create

    name, overrides = SMALL[request.param]
    out = tmp_path_factory.mktemp("families") / request.param
    result = export_bundle(name, out, overrides=overrides, batch="1:2:4")
    m = result.manifest
    torch.manual_seed(0)  # export's seeded random initialisation, rebuilt independently
    model = create(m.family, **m.config).eval()
    return request.param, out, model


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("videos")
    return [sample_video_path(), write_synthetic_video(d / "ball.mp4", 90, (120, 160), pattern="moving"), write_synthetic_video(d / "short.avi", 5, (100, 80))]


def softmax(x: torch.Tensor) -> np.ndarray:
    return torch.softmax(x.double(), dim=-1).numpy()


def test_runtime_equals_pytorch(family_bundle, videos):
    family, bundle, model = family_bundle
    rec = runtime.load(bundle, threads=1)
    assert rec.random_weights and rec.manifest.weights is None
    preds = rec.predict_batch(videos, top_k=3, batch_size=2)
    for video, p in zip(videos, preds):
        views = decode_views(video, rec.manifest.preprocessing)
        with torch.no_grad():
            out = model(torch.from_numpy(views))
        logits = out[:, -1] if family == "adafocusv3" else out  # AdaFocusV3: every exit; no thresholds -> the last
        np.testing.assert_allclose(p.probabilities, softmax(logits)[0], rtol=RTOL, atol=ATOL)
        assert p.random_weights and "random weights" in p.notes[0]


def test_multi_view_static_families(family_bundle):
    family, bundle, model = family_bundle
    if family == "adafocusv3":
        pytest.skip("AdaFocusV3 evaluates one view")
    rec = runtime.load(bundle, threads=1)
    p = rec.predict(sample_video_path(), views="2x3")
    views = decode_views(sample_video_path(), rec.manifest.preprocessing, num_clips=2, num_crops=3)
    with torch.no_grad():
        ref = softmax(model(torch.from_numpy(views))).mean(axis=0)
    np.testing.assert_allclose(p.probabilities, ref, rtol=RTOL, atol=ATOL)
    assert p.gflops == pytest.approx(6 * rec.manifest.gflops_per_view)


def test_torch_reference_backend_rebuilds_the_bundle(family_bundle, videos):
    from videploy.export.torch_backend import TorchBackend

    _, bundle, _ = family_bundle
    a = runtime.load(bundle, threads=1).predict_batch(videos[:2])
    b = runtime.load(bundle, backend=TorchBackend).predict_batch(videos[:2])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.probabilities, y.probabilities, rtol=RTOL, atol=ATOL)


def test_adafocus_early_exits_on_real_videos(family_bundle, videos):
    family, bundle, model = family_bundle
    if family != "adafocusv3":
        pytest.skip("early exits are AdaFocusV3's")
    rec = runtime.load(bundle, threads=1)
    ee = rec.manifest.early_exit
    frames = np.concatenate([decode_views(v, rec.manifest.preprocessing) for v in videos])
    with torch.no_grad():
        every_exit = model(torch.from_numpy(frames))  # (N, Tf+1, C)
    ent = -(torch.softmax(every_exit.double(), -1) * torch.log_softmax(every_exit.double(), -1)).sum(-1).numpy()
    # thresholds in the widest gap between the videos' entropies at each exit; random weights give
    # near-uniform glance predictions (entropies within ~1e-5 of log C), so a gap narrower than float
    # rounding is not used (eta = -inf there)
    eta = []
    for t in range(ee.num_steps + 1):
        e = np.sort(ent[:, t])
        gap, i = max((e[i + 1] - e[i], i) for i in range(len(e) - 1))
        eta.append(float(e[i] + e[i + 1]) / 2 if gap > 1e-4 else -math.inf)
    for continuous in (False, True):
        rec.counters.reset()
        preds = rec.predict_batch(videos, thresholds=eta, continuous=continuous, batch_size=2)
        exits = [p.adaptive.exit_step for p in preds]
        expected = [next((t for t in range(ee.num_steps + 1) if ent[i, t] <= eta[t]), ee.num_steps) for i in range(len(videos))]
        assert exits == expected and len(set(exits)) > 1
        for i, p in enumerate(preds):
            np.testing.assert_allclose(p.probabilities, softmax(every_exit[i, p.adaptive.exit_step]), rtol=RTOL, atol=ATOL)
            assert p.gflops == ee.exit_gflops[p.adaptive.exit_step]
            assert len(p.adaptive.cubes) == p.adaptive.exit_step
            for c in p.adaptive.cubes:
                x1, y1, x2, y2 = c.box
                assert 0 <= x1 < x2 <= 224 + 1e-3 and 0 <= y1 < y2 <= 224 + 1e-3
                assert x2 - x1 == pytest.approx(y2 - y1, rel=0.6)  # a patch, roughly square
        assert rec.counters.rows["local"] == sum(exits)
        assert rec.counters.rows["policy"] == sum(e > 0 for e in exits)
    # eta_0 = +inf: nothing after the glance runs
    rec.counters.reset()
    glance = rec.predict_batch(videos, thresholds=[math.inf] + [-math.inf] * ee.num_steps)
    assert rec.counters.calls.keys() == {"glance"}
    for i, p in enumerate(glance):
        np.testing.assert_allclose(p.probabilities, softmax(every_exit[i, 0]), rtol=RTOL, atol=ATOL)
        assert p.gflops == ee.exit_gflops[0]
