"""The backend contract: one set of checks, run against every backend.

Each backend must compute what the PyTorch module computes, reject wrong inputs with an error
that names the input, count its work, and support the device-handle protocol (fetch / take /
concat / to_host) that AdaFocusV3's early exits use.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tests.runtime.conftest import BACKEND_NAMES
from tests.runtime.toys import SIZE, TF, TG, D, K
from videploy.errors import VideployError
from videploy.runtime.adaptive import AdaptiveRunner

RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(params=BACKEND_NAMES)
def backend_name(request) -> str:
    return request.param


def _video(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 4, 3, SIZE, SIZE)).astype(np.float32)


def test_static_graph_matches_pytorch(backend_name, make_backend, static_dir, toy_static):
    b = make_backend(backend_name, static_dir, toy_static)
    for batch in (1, 3, 8):
        x = _video(batch, seed=batch)
        got = b.run("main", {"video": x})["logits"]
        with torch.no_grad():
            ref = toy_static(torch.from_numpy(x)).numpy()
        assert isinstance(got, np.ndarray) and got.shape == (batch, 7)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    assert b.counters.calls == {"main": 3} and b.counters.rows == {"main": 12}


def test_batch_range_is_a_limit_only_for_engines(backend_name, make_backend, static_dir, toy_static):
    """The bundle's batch range is the TensorRT profile: engines stop there; batch-dynamic graphs do not."""
    b = make_backend(backend_name, static_dir, toy_static)
    x = _video(9)
    if b.dynamic_batch:
        assert b.run("main", {"video": x})["logits"].shape == (9, 7)
    else:
        with pytest.raises(VideployError, match="batch of 9, but the bundle accepts batches of 1 to 8"):
            b.run("main", {"video": x})


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({}, "missing \\['video'\\]"),
        ({"video": _video(1), "extra": _video(1)}, "unexpected \\['extra'\\]"),
        ({"frames": _video(1)}, "missing \\['video'\\].*unexpected \\['frames'\\]"),
        ({"video": _video(1).astype(np.float64)}, "input 'video' of graph 'main' must be float32, got float64"),
        ({"video": _video(1)[0]}, "input 'video' .* must have 5 dimensions"),
        ({"video": np.zeros((1, 5, 3, SIZE, SIZE), np.float32)}, "input 'video' .*dimension 1 is 5, not 4"),
        ({"video": np.zeros((1025, 4, 3, SIZE, SIZE), np.float32)}, "batch of 1025, but the bundle accepts batches of 1 to (8|1024)"),
        ({"video": [[1.0]]}, "input 'video' .* must be a numpy array"),
    ],
    ids=["missing", "extra", "renamed", "dtype", "rank", "fixed-dim", "batch-too-large", "not-an-array"],
)
def test_bad_inputs_are_named(backend_name, make_backend, static_dir, toy_static, inputs, message):
    b = make_backend(backend_name, static_dir, toy_static)
    with pytest.raises(VideployError, match=message):
        b.run("main", inputs)
    assert b.counters.calls == {}  # nothing ran


def test_inconsistent_batch_and_unknown_names(backend_name, make_backend, adaptive_dir, toy_adafocus):
    b = make_backend(backend_name, adaptive_dir, toy_adafocus)
    ok = {
        "frames": np.zeros((2, K, 3, SIZE, SIZE), np.float32),
        "action": np.zeros((2, 4), np.float32),
        "step": np.zeros(2, np.int64),
        "local_state": np.zeros((2, D), np.float32),
        "global_state": np.zeros((2, D), np.float32),
    }
    with pytest.raises(VideployError, match="input 'global_state' of graph 'local' has 'batch' = 3 .* an earlier input has 'batch' = 2"):
        b.run("local", {**ok, "global_state": np.zeros((3, D), np.float32)})
    with pytest.raises(VideployError, match="input 'step' of graph 'local' must be int64, got int32"):
        b.run("local", {**ok, "step": np.zeros(2, np.int32)})
    with pytest.raises(VideployError, match="no graph 'main'"):
        b.run("main", {})
    with pytest.raises(VideployError, match="no output 'nope'"):
        b.run("local", ok, fetch=["nope"])
    out = b.run("local", ok, fetch=["entropy"])
    assert isinstance(out["entropy"], np.ndarray) and out["entropy"].shape == (2,)


def test_adaptive_chain_with_device_handles(backend_name, make_backend, adaptive_dir, toy_adafocus):
    """glance -> policy -> local steps through the runner: equals the PyTorch chain at every exit."""
    b = make_backend(backend_name, adaptive_dir, toy_adafocus)

    runner = AdaptiveRunner(b)
    videos = np.random.default_rng(3).standard_normal((5, 6, 3, SIZE, SIZE)).astype(np.float32)
    ref = toy_adafocus.full_exits(torch.from_numpy(videos)).numpy()  # (5, Tf+1, C)
    full = runner.run(list(videos), thresholds=[-np.inf] * (TF + 1), batch_size=3, continuous=True)
    for i, oc in enumerate(full):
        assert oc.exit == TF
        np.testing.assert_allclose(oc.logits, ref[i, TF], rtol=RTOL, atol=ATOL)
    # exits: a threshold between the entropies splits the videos at each step
    ent = np.array([oc.entropies for oc in full])
    eta = [float(np.median(ent[:, t])) for t in range(TF + 1)]
    early = runner.run(list(videos), thresholds=eta, batch_size=3)
    for i, oc in enumerate(early):
        np.testing.assert_allclose(oc.logits, ref[i, oc.exit], rtol=RTOL, atol=ATOL)
    assert len({oc.exit for oc in early}) > 1


def test_device_helpers_roundtrip(backend_name, make_backend, adaptive_dir, toy_adafocus):
    b = make_backend(backend_name, adaptive_dir, toy_adafocus)
    frames = np.random.default_rng(0).standard_normal((4, TG, 3, SIZE, SIZE)).astype(np.float32)
    host = b.run("glance", {"frames": frames}, fetch=["global_state"])["global_state"]
    gs = b.run("glance", {"frames": frames}, fetch=["entropy"])["global_state"]  # may stay on the device
    np.testing.assert_array_equal(b.to_host(gs), host)
    picked = b.take(gs, [3, 1])
    np.testing.assert_array_equal(b.to_host(picked), host[[3, 1]])
    joined = b.concat([picked, np.zeros((1, D), np.float32)])
    np.testing.assert_array_equal(b.to_host(joined), np.concatenate([host[[3, 1]], np.zeros((1, D), np.float32)]))


def test_backend_activation_errors(monkeypatch, static_dir):
    from videploy.runtime.backends import backend_class
    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

    with pytest.raises(VideployError, match="unknown backend 'tensorflow'"):
        backend_class("tensorflow")
    with pytest.raises(VideployError, match="runs on 'cpu', 'cuda', 'tensorrt', not 'tpu'"):
        OnnxRuntimeBackend(static_dir, device="tpu")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(VideployError, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
            OnnxRuntimeBackend(static_dir, device="cuda")
    with pytest.raises(VideployError, match="no int8 ONNX variant of graph 'main'"):
        OnnxRuntimeBackend(static_dir, precision="int8")
    # a backend whose library is missing says how to install it
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    with pytest.raises(VideployError, match=r"needs the Python package 'tensorrt'.*pip install 'videploy\[tensorrt\]'"):
        backend_class("tensorrt")(static_dir, device="cuda")
    with pytest.raises(VideployError, match="runs on 'cuda', not 'cpu'"):
        backend_class("tensorrt")(static_dir, device="cpu")


def test_damaged_graph_file(tmp_path, static_dir):
    import shutil

    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

    d = shutil.copytree(static_dir, tmp_path / "b")
    (d / "main.onnx").write_bytes(b"garbage")
    with pytest.raises(VideployError, match="main.onnx' is not a valid ONNX model.*re-export"):
        OnnxRuntimeBackend(d)


def test_torch_backend_needs_the_exported_weights(tmp_path, adaptive_dir):
    from videploy.bundle.manifest import read_manifest
    from videploy.export.torch_backend import TorchBackend

    read_manifest(adaptive_dir)  # records a checkpoint (toy.pth), so random re-initialisation is not an option
    with pytest.raises(VideployError, match="exported from checkpoint 'toy.pth'; give the torch backend that checkpoint"):
        TorchBackend(adaptive_dir)
    other = tmp_path / "other.pth"
    other.write_bytes(b"not the same weights")
    with pytest.raises(VideployError, match="not the one the bundle was exported from"):
        TorchBackend(adaptive_dir, checkpoint=other)
    with pytest.raises(VideployError, match="does not exist"):
        TorchBackend(adaptive_dir, checkpoint=tmp_path / "missing.pth")


def test_onnxruntime_io_binding_keeps_unfetched_outputs_as_handles(adaptive_dir, static_dir, toy_adafocus):
    """I/O binding (the GPU path) exercised on the CPU provider: same results, states handed back as handles."""
    from tests.runtime.toys import S, SIZE
    from videploy.runtime.adaptive import AdaptiveRunner
    from videploy.runtime.backends.onnxruntime import DeviceValue, OnnxRuntimeBackend

    videos = list(np.random.default_rng(3).standard_normal((5, S, 3, SIZE, SIZE)).astype(np.float32))
    assert OnnxRuntimeBackend(adaptive_dir, threads=1).io_binding  # the chain binds by default, also on the CPU
    assert not OnnxRuntimeBackend(static_dir, threads=1).io_binding  # one graph: nothing to keep between calls
    plain = AdaptiveRunner(OnnxRuntimeBackend(adaptive_dir, threads=1, io_binding=False)).run(videos, thresholds=[-np.inf] * 4)
    bound_backend = OnnxRuntimeBackend(adaptive_dir, threads=1, io_binding=True)
    out = bound_backend.run("glance", {"frames": videos[0][None, :3]}, fetch=("logits",))
    assert isinstance(out["logits"], np.ndarray) and isinstance(out["global_state"], DeviceValue)
    assert out["global_state"].shape == (1, 16) and out["global_state"].dtype == np.float32
    bound = AdaptiveRunner(bound_backend).run(videos, thresholds=[-np.inf] * 4, batch_size=2, continuous=True)
    for a, b in zip(plain, bound):
        assert a.exit == b.exit
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-6, atol=1e-6)


def test_onnxruntime_threads_stop_spinning_when_a_run_ends(static_dir):
    """onnxruntime's pool threads busy-wait after a run unless told not to; in AdaFocusV3's chain they took
    the CPU from the next graph's session (and from decode workers). Idle after a run must mean idle."""
    import time

    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(static_dir, threads=2)
    feed = {"video": _video(64)}  # enough work for onnxruntime to wake its workers
    backend.run("main", feed)
    time.sleep(0.3)  # whatever earlier tests left spinning in this process settles first
    backend.run("main", feed)
    cpu = time.process_time()
    time.sleep(0.05)
    # a spinning worker burns ~35 ms of these 50 ms (measured without the option)
    assert time.process_time() - cpu < 0.008


def test_onnxruntime_gpu_provider_options(tmp_path, adaptive_dir):
    """What the CUDA / TensorRT providers are given: profiles from the batch range, a cache inside the bundle, fp16."""
    import shutil

    from videploy.bundle.bundle import Bundle
    from videploy.runtime.backends.onnxruntime import TRT_CACHE_DIR, provider_options

    bundle = Bundle.open(shutil.copytree(adaptive_dir, tmp_path / "b"))
    local = bundle.graph("local")
    trt, cuda, cpu = provider_options(bundle, local, "tensorrt", "fp16")
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_path"] == str(bundle.root / TRT_CACHE_DIR)
    assert trt["trt_profile_min_shapes"].startswith("frames:1x1x3x16x16,action:1x4,step:1,")
    assert "frames:8x1x3x16x16" in trt["trt_profile_max_shapes"] and "frames:4x1x3x16x16" in trt["trt_profile_opt_shapes"]
    assert cuda["cudnn_conv_algo_search"] == "EXHAUSTIVE" and cpu == {}
    assert provider_options(bundle, local, "tensorrt", None)[0]["trt_fp16_enable"] is False
    assert provider_options(bundle, local, "cpu", None) == [{}]
    assert [set(o) for o in provider_options(bundle, local, "cuda", None)] == [{"device_id", "cudnn_conv_algo_search", "do_copy_in_default_stream"}, set()]


def test_tensorrt_engines_of_a_read_only_bundle_go_to_the_videploy_cache(tmp_path, adaptive_dir, monkeypatch):
    from videploy.bundle.bundle import Bundle
    from videploy.runtime.backends import onnxruntime as ort_backend

    bundle = Bundle.open(adaptive_dir)
    monkeypatch.setenv("VIDEPLOY_CACHE", str(tmp_path / "cache"))
    # root may write anywhere, so the read-only case is what os.access answers
    monkeypatch.setattr(ort_backend.os, "access", lambda path, mode: False)
    first = ort_backend.trt_cache_dir(bundle)
    assert first.parent == tmp_path / "cache" / "ort-trt"
    assert ort_backend.provider_options(bundle, bundle.graph("local"), "tensorrt", None)[0]["trt_engine_cache_path"] == str(first)
    other = Bundle.open(shutil.copytree(adaptive_dir, tmp_path / "copy"))
    assert ort_backend.trt_cache_dir(other) != first  # one folder per bundle: engines never mix


def test_openvino_runs_fp32_unless_reduced_precision_is_asked_for(static_dir, toy_static):
    """OpenVINO's CPU default is bf16 on bf16-capable CPUs: the backend forces fp32; bf16 is opt-in."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'videploy[openvino]')")
    from videploy.runtime.backends.openvino import OpenVinoBackend

    fp32 = OpenVinoBackend(static_dir, threads=1)
    assert str(fp32._compiled["main"].get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32", "float32")
    x = _video(2)
    with torch.no_grad():
        ref = toy_static(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(fp32.run("main", {"video": x})["logits"], ref, rtol=1e-5, atol=1e-5)
    bf16 = OpenVinoBackend(static_dir, threads=1, precision="bf16")
    assert "bf16" in str(bf16._compiled["main"].get_property("INFERENCE_PRECISION_HINT")) or "bfloat16" in str(bf16._compiled["main"].get_property("INFERENCE_PRECISION_HINT"))


@pytest.mark.parametrize("options", [{"channels_last": True}, pytest.param({"compile": True}, marks=pytest.mark.slow)])
def test_torch_baseline_options_give_the_same_answers(static_dir, toy_static, options):
    """The fair-baseline variants of the PyTorch backend (NHWC weights, torch.compile) compute the same thing."""
    from videploy.export.torch_backend import TorchBackend

    x = _video(2)
    plain = TorchBackend(static_dir, model=toy_static).run("main", {"video": x})["logits"]
    variant = TorchBackend(static_dir, model=toy_static, **options).run("main", {"video": x})["logits"]
    np.testing.assert_allclose(variant, plain, rtol=1e-5, atol=1e-5)
