"""Full-size published configurations export and verify (slow: minutes on a CPU; CI skips them)."""

from __future__ import annotations

import time

import onnx
import pytest

from videploy.bundle.manifest import read_manifest
from videploy.export.api import export_bundle


@pytest.mark.slow
@pytest.mark.parametrize("name", ["video_focalnet_tiny", "stam_16", "adafocusv3_mbv2_r50"])
def test_full_size_export_verifies(name, tmp_path):
    t0 = time.perf_counter()
    result = export_bundle(name, tmp_path / name, batch="1:4:8")
    seconds = time.perf_counter() - t0
    m = read_manifest(tmp_path / name)
    assert m.verification["passed"] and result.report.passed
    for g in m.graphs:
        proto = onnx.load(str(tmp_path / name / g.file), load_external_data=False)
        assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted([g.file for g in m.graphs] + ["manifest.json"])
    worst = max((r.max_rel for r in result.report.results if not r.exact), default=0.0)
    print(f"\n{name}: exported and verified in {seconds:.0f} s ({ {k: round(v) for k, v in result.stage_seconds.items()} }); worst relative error {worst:.2e}; GFLOPs/view {m.gflops_per_view:.1f}")
