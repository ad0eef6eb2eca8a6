"""Tiny exported bundles, calibration videos and their INT8 bundles, shared by the INT8 tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.export.tiny_models import TinyAdaFocus, TinyClipNet


@pytest.fixture(scope="session")
def calib_videos(tmp_path_factory) -> Path:
    """A folder of three short videos: two generated (different content), one real sample clip."""
    import shutil

    from videploy.runtime.samples import sample_video_path, write_synthetic_video

    d = tmp_path_factory.mktemp("calib_videos")
    write_synthetic_video(d / "moving.mp4", num_frames=40, size=(72, 96), fps=24.0, pattern="moving")
    write_synthetic_video(d / "index.avi", num_frames=30, size=(64, 80), fps=24.0, pattern="index")
    shutil.copy(sample_video_path(), d / "sample.mp4")
    return d


@pytest.fixture(scope="session")
def fp32_clip(tmp_path_factory) -> Path:
    from videploy.export.api import export_bundle

    out = tmp_path_factory.mktemp("int8") / "clip"
    export_bundle(TinyClipNet(), out, name="tiny_clip", batch="1:2:4")
    return out


@pytest.fixture(scope="session")
def fp32_ada(tmp_path_factory) -> Path:
    from videploy.export.api import export_bundle

    out = tmp_path_factory.mktemp("int8") / "ada"
    export_bundle(TinyAdaFocus(), out, name="tiny_ada")
    return out


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("int8_cache")


# the chain check is off for the shared bundles: which graphs a random tiny model keeps in float
# depends on library versions, and these bundles test the quantized graphs' form (test_chain.py tests the check)
OPTIONS = dict(clips_per_video=4, max_clips=12, holdout_every=3, chain_clips=0)


@pytest.fixture(scope="session")
def int8_clip(fp32_clip, calib_videos, cache_dir, tmp_path_factory):
    from videploy.calibration.int8 import QuantizeOptions, quantize_bundle

    out = tmp_path_factory.mktemp("int8_out") / "clip"
    return quantize_bundle(fp32_clip, [calib_videos], out, QuantizeOptions(cache_dir=cache_dir, **OPTIONS))


@pytest.fixture(scope="session")
def int8_ada(fp32_ada, calib_videos, cache_dir, tmp_path_factory):
    from videploy.calibration.int8 import QuantizeOptions, quantize_bundle

    out = tmp_path_factory.mktemp("int8_out") / "ada"
    return quantize_bundle(fp32_ada, [calib_videos], out, QuantizeOptions(cache_dir=cache_dir, **OPTIONS))
