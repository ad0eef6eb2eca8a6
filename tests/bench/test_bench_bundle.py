"""``bench_bundle`` on toy bundles: structure, ratios consistent with the raw samples, and
AdaFocusV3's compute accounting checked against an independent run of the runtime. No timed
assertions: only what the numbers must satisfy whatever the machine's speed."""

from __future__ import annotations

import math
import statistics
from functools import partial

import numpy as np
import pytest

from tests.runtime.toys import EXIT_GFLOPS, TF, ToyAdaFocus, adaptive_bundle
from videploy import runtime
from videploy.bench.bundle import bench_bundle
from videploy.bench.inputs import clip_stream
from videploy.bundle.manifest import read_manifest
from videploy.errors import VideployError
from videploy.export.torch_backend import TorchBackend
from videploy.runtime.samples import sample_video_path

VIDEOS = 6


@pytest.fixture(scope="module")
def toy():
    return ToyAdaFocus().eval()


@pytest.fixture(scope="module")
def ada_dir(tmp_path_factory, toy):
    return adaptive_bundle(tmp_path_factory.mktemp("bench") / "ada", toy)


@pytest.fixture(scope="module")
def report(ada_dir, toy):
    return bench_bundle(
        ada_dir,
        backends=("onnxruntime", "torch"),
        batches=(1, 4, 99),
        repeat=2,
        warmup=1,
        threads=1,
        num_videos=VIDEOS,
        factories={"torch": partial(TorchBackend, model=toy)},
        command="test",
    )


def test_graph_ratios_follow_the_raw_samples(report):
    d = report.to_dict()
    assert d["reference"] == "torch" and d["command"] == "test"
    assert [b["status"] for b in d["backends"]] == ["ok", "ok"]
    assert any("batch 99 skipped" in n for n in d["notes"])
    assert [(g["role"], g["batch"]) for g in d["graphs"]] == [(r, b) for r in ("glance", "policy", "local") for b in (1, 4)]
    for g in d["graphs"]:
        med = {n: statistics.median(t["samples_s"]) for n, t in g["backends"].items()}
        assert set(med) == {"onnxruntime", "torch"}
        for n, t in g["backends"].items():
            assert len(t["samples_s"]) == 2 and t["median_s"] == pytest.approx(med[n])
            assert t["throughput_per_s"] == pytest.approx(g["batch"] / med[n])
            assert g["speedup"][n] == pytest.approx(med["torch"] / med[n])
        assert g["speedup"]["torch"] == 1.0


def test_early_exit_accounting_matches_the_runtime(report, ada_dir):
    a = report.to_dict()["adaptive"]
    assert a["backend"] == "onnxruntime" and a["batch_size"] == 4 and a["exit_gflops"] == list(EXIT_GFLOPS)
    th = a["thresholds"]
    assert th["source"] == "equal exits" and th["budget_gflops"] is None
    eta = [float(v) for v in th["values"]]

    # an independent run of the runtime on the same clips, with the same thresholds
    rec = runtime.load(ada_dir, threads=1)
    stream = clip_stream([sample_video_path()], VIDEOS, rec.manifest.preprocessing)
    exits = np.array([p.adaptive.exit_step for p in rec.predict_batch(stream, thresholds=eta, batch_size=4)])
    expected = float(np.mean(np.asarray(EXIT_GFLOPS)[exits]))

    e = a["early_exit"]
    full, early = e["cases"]["all steps"], e["cases"]["early exit"]
    assert full["gflops_per_video"] == pytest.approx(EXIT_GFLOPS[-1])
    assert full["exit_counts"] == [0] * TF + [VIDEOS]
    assert early["exit_counts"] == np.bincount(exits, minlength=TF + 1).tolist()
    assert early["gflops_per_video"] == pytest.approx(expected)
    assert e["gflops_ratio"] == pytest.approx(expected / EXIT_GFLOPS[-1])
    # the default thresholds send floor(6 / 4) = 1 clip out at each early exit, the rest at the last
    assert early["exit_counts"] == [1, 1, 1, 3]
    assert th["expected_gflops"] == pytest.approx(expected)
    # the work really skipped: a video that left at exit t ran t local steps (and no policy if t = 0)
    assert early["rows"]["local"] == int(exits.sum()) and full["rows"]["local"] == TF * VIDEOS
    assert early["rows"]["policy"] == int((exits > 0).sum())
    assert e["time_ratio"] == pytest.approx(early["median_s"] / full["median_s"])
    assert e["speedup"] == pytest.approx(full["median_s"] / early["median_s"])


def test_continuous_batching_same_work_fuller_calls(report):
    b = report.to_dict()["adaptive"]["batching"]
    static, cont = b["cases"]["static"], b["cases"]["continuous"]
    assert b["identical_results"] is True
    assert static["exit_counts"] == cont["exit_counts"]
    assert static["rows"]["local"] == cont["rows"]["local"]  # the same local steps run ...
    assert cont["calls"]["local"] <= static["calls"]["local"]  # ... in no more calls
    for c in (static, cont):
        assert c["local_rows_per_call"] == pytest.approx(c["rows"]["local"] / c["calls"]["local"])
        assert c["local_occupancy"] == pytest.approx(c["local_rows_per_call"] / 4)
    assert b["speedup"] == pytest.approx(static["median_s"] / cont["median_s"])


def test_where_time_goes(report):
    (w,) = report.to_dict()["where_time_goes"]
    assert w["decode_s_per_video"] == report.decode.stats.median
    assert w["decode_fraction"] == pytest.approx(w["decode_s_per_video"] / (w["decode_s_per_video"] + w["run_s_per_video"]))


def test_given_thresholds_and_budget(ada_dir):
    eta = [0.5, 1.0, 1.0, math.inf]
    r = bench_bundle(ada_dir, backends=("onnxruntime",), batches=(2,), repeat=1, warmup=0, threads=1, num_videos=4, thresholds=eta)
    a = r.to_dict()["adaptive"]
    assert a["thresholds"]["source"] == "given" and a["thresholds"]["values"] == [0.5, 1.0, 1.0, "inf"]
    assert a["batch_size"] == 2

    r = bench_bundle(ada_dir, backends=("onnxruntime",), batches=(4,), repeat=1, warmup=0, threads=1, num_videos=4, budget=1.0)
    th = r.to_dict()["adaptive"]["thresholds"]
    assert th["source"] == "budget" and th["expected_gflops"] <= 1.0 + 1e-9
    assert r.to_dict()["adaptive"]["early_exit"]["cases"]["early exit"]["gflops_per_video"] == pytest.approx(th["expected_gflops"])


def test_errors(ada_dir):
    with pytest.raises(VideployError, match="accepts 1 to 8"):
        bench_bundle(ada_dir, backends=("onnxruntime",), batches=(16,), repeat=1)
    with pytest.raises(VideployError, match="none of the requested backends"):
        bench_bundle(ada_dir, backends=("torch",), batches=(1,), repeat=1)  # toy weights: no checkpoint to rebuild from


def test_clip_stream_gives_different_clips(ada_dir):
    stream = clip_stream([sample_video_path()], 5, read_manifest(ada_dir).preprocessing)
    assert len(stream) == 5 and all(v.views.shape[0] == 1 for v in stream)
    assert len({v.source for v in stream}) == 5
    flat = [v.views.ravel() for v in stream]
    assert all(not np.array_equal(flat[i], flat[j]) for i in range(5) for j in range(i + 1, 5))


def test_default_thresholds_skip_an_exit_that_cannot_tell_clips_apart(tmp_path):
    """A glance head with zero weights (like an untrained one) gives every clip the same entropy:
    that exit gets no share of the clips instead of all of them."""
    import torch

    toy = ToyAdaFocus().eval()
    with torch.no_grad():
        toy.g_head.weight.zero_()
    d = adaptive_bundle(tmp_path / "tied", toy)
    r = bench_bundle(d, backends=("onnxruntime",), batches=(4,), repeat=1, warmup=0, threads=1, num_videos=6)
    a = r.to_dict()["adaptive"]
    assert a["thresholds"]["source"] == "equal exits" and a["thresholds"]["values"][0] == "-inf"
    assert a["early_exit"]["cases"]["early exit"]["exit_counts"] == [0, 2, 2, 2]


def test_tensorrt_backend_runs_the_stream(ada_dir, tmp_path, monkeypatch):
    """The TensorRT backend's code (on the simulated library: tests/runtime/fake_tensorrt) as the
    first backend: graph timing on host inputs and the AdaFocusV3 stream with device-side states."""
    import shutil

    from tests.runtime import fake_tensorrt

    d = shutil.copytree(ada_dir, tmp_path / "ada")
    fake_tensorrt.add_engines(d)
    fake_tensorrt.install(monkeypatch)
    r = bench_bundle(d, backends=("tensorrt", "onnxruntime"), batches=(1, 4), repeat=1, warmup=0, threads=1, num_videos=6).to_dict()
    assert [(b["name"], b["status"], b["device"]) for b in r["backends"]] == [("tensorrt", "ok", "cuda"), ("onnxruntime", "ok", "cpu")]
    assert r["reference"] == "tensorrt" and r["adaptive"]["backend"] == "tensorrt"
    assert all(set(g["backends"]) == {"tensorrt", "onnxruntime"} for g in r["graphs"])
    assert r["adaptive"]["batching"]["identical_results"] is True
    assert r["adaptive"]["early_exit"]["cases"]["early exit"]["exit_counts"] == [1, 1, 1, 3]
