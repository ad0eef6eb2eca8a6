"""End-to-end timing on real files (bench/pipeline.py): every case runs, and the derived figures follow the samples."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from tests.bench.bundles import tiny_focalnet_bundle
from tests.runtime.toys import TF, ToyAdaFocus, adaptive_bundle
from videploy import jsonsafe
from videploy.bench.inputs import write_clip_files
from videploy.errors import VideployError
from videploy.bench.pipeline import bench_end_to_end
from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
from videploy.runtime.samples import write_synthetic_video


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    return [str(write_synthetic_video(d / f"v{i}.mp4", num_frames=20 + 9 * i, size=(24 + 8 * i, 40), pattern="moving" if i % 2 else "index")) for i in range(4)]


def test_adaptive_end_to_end(tmp_path, files):
    bundle = adaptive_bundle(tmp_path / "ada", ToyAdaFocus().eval())
    backend = OnnxRuntimeBackend(bundle, threads=1)
    from videploy import runtime

    probe = runtime.load(bundle, backend=backend)
    ent = np.array([p.adaptive.entropies for p in probe.predict_batch(files, thresholds=[-np.inf] * (TF + 1))])
    eta = [float(np.sort(ent[:, t])[t]) for t in range(TF)] + [math.inf]  # spread the exits
    e = bench_end_to_end(backend, files, batch_size=2, repeat=2, warmup=0, clock=time.perf_counter, thresholds=eta)
    assert set(e.timings) == {
        "decode, every frame", "decode, glance frames", "model, all steps", "model, early exit",
        "end to end, all steps, lazy", "end to end, all steps, eager", "end to end, early exit, lazy", "end to end, early exit, eager",
    }
    assert e.gflops_per_video["model, early exit"] < e.gflops_per_video["model, all steps"]  # the runtime's accounting
    t = e.timings
    slower = min(t["decode, every frame"].throughput, t["model, early exit"].throughput)
    assert e.efficiency("end to end, early exit, lazy") == pytest.approx(t["end to end, early exit, lazy"].throughput / slower)
    saved_time = 1 - t["end to end, early exit, lazy"].stats.median / t["end to end, all steps, lazy"].stats.median
    saved_gflops = 1 - e.gflops_per_video["end to end, early exit, lazy"] / e.gflops_per_video["end to end, all steps, lazy"]
    assert e.realised(lazy=True) == pytest.approx(saved_time / saved_gflops)
    d = json.loads(jsonsafe.dumps(e.to_dict()))
    assert d["videos"] == 4 and "realised_lazy" in d and "realised_eager" in d
    assert len(d["cases"]["end to end, all steps, eager"]["samples_s"]) == 2
    backend.close()


def test_static_end_to_end(tmp_path, files):
    bundle = tiny_focalnet_bundle(tmp_path / "vfn")
    backend = OnnxRuntimeBackend(bundle, threads=1)
    e = bench_end_to_end(backend, files, batch_size=2, repeat=1, warmup=0, clock=time.perf_counter)
    assert set(e.timings) == {"decode", "model", "end to end", "end to end, decoding inline"}
    assert e.realised() is None and e.stages["end to end"] == ("decode", "model")
    assert 0 < e.efficiency("end to end") < 10
    backend.close()


def test_clip_files_are_distinct_windows_of_the_sources(tmp_path, files):
    import cv2

    out = tmp_path / "clips"
    out.mkdir()
    clips = write_clip_files(files[:2], count=5, length=12, out=out)
    assert len(clips) == 5 and len(set(clips)) == 5
    frames = []
    for c in clips:
        cap = cv2.VideoCapture(c)
        got = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            got.append(f)
        cap.release()
        assert 1 <= len(got) <= 12
        frames.append(np.stack(got))
    # source 0, turns 0 and 1: a later window, mirrored -- not the same clip
    assert frames[0].shape[1:] == frames[2].shape[1:] and not np.array_equal(frames[0][:5], frames[2][:5])
    with pytest.raises(VideployError, match="no frames could be read"):
        write_clip_files([str(tmp_path / "missing.mp4")], count=2, length=4, out=out)
