"""Full-size zoo models through export and the runtime (slow: run with ``pytest -m slow``)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from videploy import runtime
from videploy.runtime.samples import sample_video_path
from videploy.runtime.video import decode_views

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["video_focalnet_tiny", "stam_16", "adafocusv3_mbv2_r50"])
def test_full_size_parity_and_early_exit(tmp_path, name):
    from videploy.export.api import export_bundle
    from videploy.models import create

    t0 = time.perf_counter()
    result = export_bundle(name, tmp_path / name, verify_batch_sizes=(1,))
    t_export = time.perf_counter() - t0
    m = result.manifest
    torch.manual_seed(0)
    model = create(m.family, **m.config).eval()
    rec = runtime.load(tmp_path / name)
    video = sample_video_path()
    t1 = time.perf_counter()
    p = rec.predict(video)
    t_predict = time.perf_counter() - t1
    with torch.no_grad():
        out = model(torch.from_numpy(decode_views(video, m.preprocessing)))
    logits = out[:, -1] if m.early_exit is not None else out
    np.testing.assert_allclose(p.probabilities, torch.softmax(logits.double(), -1).numpy()[0], rtol=1e-4, atol=1e-6)
    if m.early_exit is not None:
        ee = m.early_exit
        ent = -(torch.softmax(out.double(), -1) * torch.log_softmax(out.double(), -1)).sum(-1).numpy()[0]
        stop = ee.num_steps // 2  # stop exactly after half the focus steps
        eta = [-math.inf] * (ee.num_steps + 1)
        eta[stop] = float(ent[stop]) + 1e-4
        rec.counters.reset()
        q = rec.predict(video, thresholds=eta)
        assert q.adaptive.exit_step == stop and q.gflops == ee.exit_gflops[stop]
        assert rec.counters.rows["local"] == stop
        np.testing.assert_allclose(q.probabilities, torch.softmax(out[0, stop].double(), -1).numpy(), rtol=1e-4, atol=1e-6)
    print(f"{name}: export {t_export:.1f} s, predict {t_predict:.2f} s, {p.gflops:.2f} GFLOPs")
