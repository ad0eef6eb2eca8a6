"""Comparing backends through the runtime's path: the per-output criterion, and the recorded calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.runtime.toys import GLANCE_INDICES, TF, ToyAdaFocus
from videploy.export.torch_backend import TorchBackend
from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
from videploy.runtime.compare import Tolerance, call_labels, compare, compare_backends, record_calls

TOL = Tolerance()


def test_compare_identical_and_within_tolerance():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 10)).astype(np.float32)
    r = compare("main", "logits", "batch 2", ref, ref.copy(), TOL)
    assert r.passed and r.max_abs == 0 and r.cosine == pytest.approx(1.0) and r.top1 == 1.0
    scale = float(np.abs(ref).max())
    near = ref + np.float32(0.5e-4 * scale)
    r = compare("main", "logits", "b", ref, near, TOL)
    assert r.passed and r.max_rel == pytest.approx(0.5e-4, rel=1e-3)


def test_compare_fails_beyond_tolerance():
    ref = np.linspace(-3, 3, 20, dtype=np.float32).reshape(2, 10)
    got = ref.copy()
    got[0, 3] += 0.01
    r = compare("main", "logits", "b", ref, got, TOL)
    assert not r.passed and r.max_abs == pytest.approx(0.01, rel=1e-3)
    assert "main.logits [b]" in r.describe()


def test_compare_cosine_catches_a_sign_flip_of_small_values():
    # every element within atol + rtol*max is not enough when the direction is wrong
    ref = np.full((1, 1000), 1e-5, dtype=np.float32)
    ref[0, 0] = 1.0
    got = ref.copy()
    got[0, 1:] = -1e-5
    r = compare("g", "x", "b", ref, got, Tolerance(rtol=1e-4, atol=1e-4, min_cosine=0.99999999))
    assert r.cosine < 0.99999999 and r.max_abs <= 1e-4
    assert r.passed  # waived: the whole difference is below atol
    r = compare("g", "x", "b", ref * 1e3, got * 1e3, Tolerance(rtol=1e-4, atol=1e-4, min_cosine=0.99999999))
    assert not r.passed


def test_compare_zero_state_and_top1():
    z = np.zeros((2, 8), dtype=np.float32)
    assert compare("local", "next_local_state", "b", z, z, TOL).passed
    ref = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    got = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    r = compare("main", "logits", "b", ref, got, TOL)
    assert r.top1 == 0.5 and not r.passed


def test_compare_integers_exact():
    ref = np.array([[[0], [3], [5]]], dtype=np.int64)
    assert compare("policy", "frame_indices", "b", ref, ref.copy(), TOL).passed
    got = ref.copy()
    got[0, 1, 0] = 4
    r = compare("policy", "frame_indices", "b", ref, got, TOL)
    assert r.exact and not r.passed and r.max_rel == pytest.approx(1 / 3)
    assert "differ" in r.describe()
    # a float result where an integer is expected is wrong even with equal values
    assert not compare("policy", "frame_indices", "b", ref, ref.astype(np.float32), TOL).passed


def test_compare_shape_and_nonfinite():
    a = np.zeros((2, 3), dtype=np.float32)
    assert not compare("g", "x", "b", a, np.zeros((3, 2), dtype=np.float32), TOL).passed
    b = np.array([1.0, np.inf, 2.0], dtype=np.float32)
    assert compare("g", "x", "b", b, b.copy(), TOL).passed
    assert not compare("g", "x", "b", b, np.array([1.0, 3.0, 2.0], dtype=np.float32), TOL).passed
    assert not compare("g", "x", "b", b, np.array([1.0, np.nan, 2.0], dtype=np.float32), TOL).passed
    assert math.isinf(compare("g", "x", "b", b, np.array([1.0, 3.0, 2.0], dtype=np.float32), TOL).max_abs)


def _videos(n: int, seed: int = 0) -> np.ndarray:
    from tests.runtime.toys import S, SIZE

    return np.random.default_rng(seed).normal(size=(n, S, 3, SIZE, SIZE)).astype(np.float32)


def test_recorded_adaptive_calls_are_the_runtime_chain(adaptive_dir, toy_adafocus):
    """glance -> policy -> every local step; frames gathered by the policy's indices, step counting up,
    the state carried from zeros: what the runtime feeds, with every exit forced."""
    video = _videos(3)
    calls = record_calls(OnnxRuntimeBackend(adaptive_dir, threads=1), video)
    assert [c.role for c in calls] == ["glance", "policy"] + ["local"] * TF
    assert call_labels(calls) == ["exit 0", ""] + [f"step {t} exit {t + 1}" for t in range(TF)]
    np.testing.assert_array_equal(calls[0].inputs["frames"], video[:, list(GLANCE_INDICES)])
    idx = calls[1].outputs["frame_indices"]
    state = np.zeros_like(calls[2].inputs["local_state"])
    for t in range(TF):
        feeds = calls[2 + t].inputs
        np.testing.assert_array_equal(feeds["frames"], video[np.arange(3)[:, None], idx[:, t]])
        np.testing.assert_array_equal(feeds["step"], [t] * 3)
        np.testing.assert_array_equal(feeds["action"], calls[1].outputs["actions"][:, t])
        np.testing.assert_array_equal(feeds["global_state"], calls[0].outputs["global_state"])
        np.testing.assert_array_equal(feeds["local_state"], state)
        state = calls[2 + t].outputs["next_local_state"]
    # every exit's logits equal the model's own chain, computed without the runtime
    ref = toy_adafocus.full_exits(torch.from_numpy(video)).numpy()
    got = np.stack([calls[0].outputs["logits"]] + [c.outputs["logits"] for c in calls[2:]], axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_compare_backends_passes_for_the_same_model_and_names_the_first_difference(adaptive_dir, toy_adafocus):
    ort = OnnxRuntimeBackend(adaptive_dir, threads=1)
    same = TorchBackend(adaptive_dir, model=toy_adafocus)
    report = compare_backends(same, ort, [_videos(1), _videos(2, seed=1)], "random frames")
    assert report.passed and report.batch_sizes == (1, 2)
    assert report.backends == "onnxruntime CPUExecutionProvider vs PyTorch (fp32)"
    assert {(r.graph, r.output) for r in report.results} >= {("glance", "logits"), ("policy", "frame_indices"), ("local", "next_local_state")}
    other = TorchBackend(adaptive_dir, model=ToyAdaFocus(seed=1).eval())
    bad = compare_backends(other, ort, [_videos(2)], "random frames")
    assert not bad.passed
    assert bad.failures()[0].graph == "glance" and bad.failures()[0].call == "batch 2 exit 0"


def test_recorded_static_call(static_dir, toy_static):
    from tests.runtime.toys import SIZE

    video = np.random.default_rng(0).normal(size=(2, toy_static.preprocessing().num_frames, 3, SIZE, SIZE)).astype(np.float32)
    (call,) = record_calls(OnnxRuntimeBackend(static_dir, threads=1), video)
    assert call.role == "main" and call_labels([call]) == [""]
    with torch.no_grad():
        np.testing.assert_allclose(call.outputs["logits"], toy_static(torch.from_numpy(video)).numpy(), rtol=1e-5, atol=1e-5)
    assert not math.isnan(float(call.outputs["logits"].sum()))
