"""Parity comparison and the AdaFocusV3 chain driver (pure numpy; no export needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videploy.bundle.manifest import EarlyExit
from videploy.errors import VideployError
from videploy.export.verify import Tolerance, adafocus_chain, batch_of, compare

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


def test_batch_of_makes_distinct_natural_samples():
    view = np.random.default_rng(1).random((1, 4, 3, 5, 6), dtype=np.float32)
    b = batch_of(view, 6)
    assert b.shape == (6, 4, 3, 5, 6) and b.flags.c_contiguous
    np.testing.assert_array_equal(b[0], view[0])
    np.testing.assert_array_equal(b[1], view[0][..., ::-1])
    np.testing.assert_array_equal(b[2], view[0][::-1])
    np.testing.assert_array_equal(b[5], np.roll(view[0][..., ::-1], 1, axis=0))
    assert len({x.tobytes() for x in b}) == 6


def _early_exit(steps=3, k=1, s=6, state=4):
    return EarlyExit(num_segments=s, glance_indices=(1, 3, 5), num_steps=steps, frames_per_cube=k, patch_size=8, exit_gflops=tuple(range(steps + 1)), state_size=state)


def test_adafocus_chain_drives_the_graphs_like_the_runtime():
    """Frames are gathered by the policy's indices, step counts up, the state is carried from zeros."""
    ee = _early_exit()
    b, s = 2, 6
    video = np.arange(b * s, dtype=np.float32).reshape(b, s, 1, 1, 1) * np.ones((1, 1, 3, 2, 2), np.float32)
    indices = np.array([[[4], [0], [2]], [[1], [5], [3]]], dtype=np.int64)
    seen = []

    def run(role, feeds):
        seen.append((role, {k: np.array(v) for k, v in feeds.items()}))
        if role == "glance":
            return {"featmap": np.zeros((b, 3, 1)), "global_feat": np.zeros((b, 3)), "global_state": np.full((b, 4), 7.0, np.float32), "logits": np.zeros((b, 2))}
        if role == "policy":
            return {"frame_indices": indices, "actions": np.arange(b * 3 * 4, dtype=np.float32).reshape(b, 3, 4)}
        return {"next_local_state": feeds["local_state"] + 1.0 + feeds["step"][:, None], "logits": np.zeros((b, 2))}

    calls = adafocus_chain(run, video, ee)
    assert [c[:2] for c in calls] == [("glance", "exit 0"), ("policy", ""), ("local", "step 0 exit 1"), ("local", "step 1 exit 2"), ("local", "step 2 exit 3")]
    np.testing.assert_array_equal(seen[0][1]["frames"][:, :, 0, 0, 0], video[:, [1, 3, 5], 0, 0, 0])
    state = np.zeros((b, 4), np.float32)
    for t in range(3):
        feeds = seen[2 + t][1]
        np.testing.assert_array_equal(feeds["frames"][:, 0, 0, 0, 0], video[np.arange(b), indices[:, t, 0], 0, 0, 0])
        np.testing.assert_array_equal(feeds["step"], [t, t])
        assert feeds["step"].dtype == np.int64
        np.testing.assert_array_equal(feeds["action"], np.arange(b * 3 * 4, dtype=np.float32).reshape(b, 3, 4)[:, t])
        np.testing.assert_array_equal(feeds["local_state"], state)
        np.testing.assert_array_equal(feeds["global_state"], np.full((b, 4), 7.0))
        state = state + 1.0 + t


def test_adafocus_chain_refuses_bad_indices():
    ee = _early_exit()
    video = np.zeros((1, 6, 3, 2, 2), np.float32)

    def run(role, feeds):
        if role == "glance":
            return {"featmap": 0, "global_feat": 0, "global_state": np.zeros((1, 4), np.float32)}
        return {"frame_indices": np.array([[[0], [6], [1]]]), "actions": np.zeros((1, 3, 4), np.float32)}

    with pytest.raises(VideployError, match="outside the 6 sampled frames"):
        adafocus_chain(run, video, ee)
    with pytest.raises(VideployError, match="frames_per_cube"):
        adafocus_chain(run, video, _early_exit(steps=2))
