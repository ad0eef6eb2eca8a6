"""Every exit's logits from a bundle equal the model's own all-exit forward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.runtime.toys import EXIT_GFLOPS, TF, ToyAdaFocus, adaptive_bundle
from videploy.bundle.manifest import BatchRange
from videploy.calibration.exit_logits import collect_exit_logits
from videploy.runtime import load
from videploy.runtime.exit_criteria import criterion_values


@pytest.fixture(scope="module")
def toy() -> ToyAdaFocus:
    return ToyAdaFocus().eval()


@pytest.mark.parametrize("batch", [BatchRange(1, 4, 8), BatchRange(4, 4, 4)])  # dynamic, and fixed (padded)
def test_collected_logits_are_every_exit(tmp_path, toy, batch):
    bundle = adaptive_bundle(tmp_path / "ada", toy, batch=batch)
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, size=(12, 20, 24, 3), dtype=np.uint8) for _ in range(6)]
    rec = load(bundle, threads=1)
    got = collect_exit_logits(rec, videos + [np.zeros((0, 8, 8, 3), dtype=np.uint8)], batch_size=4)
    assert got.logits.shape == (6, TF + 1, toy.C) and got.kept == tuple(range(6))
    assert len(got.failures) == 1 and got.failures[0][0] == 6
    frames = torch.from_numpy(np.stack([rec.prepare(v).views[0] for v in videos]))
    np.testing.assert_allclose(got.logits, toy.full_exits(frames).numpy(), rtol=1e-4, atol=1e-5)
    # the runtime with no early exit ends at the last exit's logits, with the same criterion values
    preds = rec.predict_batch(videos, thresholds=[-math.inf] * (TF + 1))
    for p, lg in zip(preds, got.logits):
        assert p.adaptive.exit_step == TF and p.gflops == EXIT_GFLOPS[-1]
        np.testing.assert_allclose(p.adaptive.entropies, criterion_values(lg), rtol=1e-4, atol=1e-5)
