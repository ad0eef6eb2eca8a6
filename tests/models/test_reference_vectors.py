"""Every official reference vector reproduces through tests/reference_vectors.py:run_vector."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import videploy.models as vm

from tests.conftest import reference_vectors
from tests.reference_vectors import load_vector, run_vector

# The reference README's recommended comparison for a float32 re-implementation.
LOOSE = {"featmap", "featmap_layer4", "patches_images"}  # atol 2e-3
EXACT_PREFIXES = ("psi_indices", "shift_div")


@pytest.mark.parametrize("npz", reference_vectors(), ids=lambda p: p.stem)
def test_reference_vector(npz):
    _, arrays = load_vector(npz)
    got = run_vector(npz)
    assert set(got) == set(arrays["out"])
    for name, ref in arrays["out"].items():
        out = got[name]
        assert out.shape == ref.shape, f"{name}: shape {out.shape} != {ref.shape}"
        if name.startswith(EXACT_PREFIXES):
            np.testing.assert_array_equal(out.astype(np.float64), ref.astype(np.float64), err_msg=name)
        else:
            atol = 2e-3 if name in LOOSE else 1e-4
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=atol, err_msg=name)


# --------------------------------------------------------------------------------------------
# run_vector on sidecar spellings the public set does not use (unshared vectors may)
# --------------------------------------------------------------------------------------------


def _write_vector(directory, name, meta, arrays):
    flat = {f"{prefix}/{k}": np.asarray(v, dtype=np.float32) for prefix, group in arrays.items() for k, v in group.items()}
    np.savez(directory / f"{name}.npz", **flat)
    (directory / f"{name}.json").write_text(json.dumps({"name": name, **meta}))
    return directory / f"{name}.npz"


def _shift_by_definition(x, n_segment, fold_div):
    # numpy, from the definition: [0, fold) from frame t+1, [fold, 2*fold) from frame t-1, rest kept
    nt, c = x.shape[:2]
    v = x.reshape(nt // n_segment, n_segment, c, *x.shape[2:])
    fold = c // fold_div
    out = v.copy()
    out[:, :, :fold] = 0
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, :, fold : 2 * fold] = 0
    out[:, 1:, fold : 2 * fold] = v[:, :-1, fold : 2 * fold]
    return out.reshape(x.shape)


def test_run_vector_official_shift_spellings(tmp_path):
    # TemporalShift.shift's own keywords (inplace) and default fold_div (3), module-qualified
    # names, and fold_div 1 (every channel from the next frame)
    x = np.random.default_rng(0).standard_normal((8, 7, 2, 3)).astype(np.float32)
    calls = {
        "shift_div3": "TemporalShift.shift(x, 4)",
        "shift_div1": "ops.temporal_shift.TemporalShift.shift(x, n_segment=4, fold_div=1, inplace=False)",
        "shift_div2": "TemporalShift.shift(x, n_segment=4, fold_div=2, inplace=False)  [official]",
    }
    want = {name: _shift_by_definition(x, 4, int(name[len("shift_div") :])) for name in calls}
    npz = _write_vector(tmp_path, "tsm_calls", {"function_calls": calls}, {"in": {"x": x}, "out": want})
    got = run_vector(npz)
    for name, ref in want.items():
        np.testing.assert_array_equal(got[name], ref, err_msg=name)
    cfg = {"shift_config": {"n_segment": 2, "fold_divs": [1, 3]}}
    npz = _write_vector(tmp_path, "tsm_cfg", cfg, {"in": {"x": x}, "out": {"shift_div1": _shift_by_definition(x, 2, 1)}})
    np.testing.assert_array_equal(run_vector(npz)["shift_div1"], _shift_by_definition(x, 2, 1))


def _random_state(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name else torch.randn(t.shape, generator=g) * 0.2)
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_run_vector_class_refs_devices_and_role_names(tmp_path):
    # norm_layer as a torch class_ref, a device kwarg, and inputs whose names differ from the call's
    resnet_kwargs = {"layers": [1, 1, 1, 1], "num_classes": 3}
    model = vm.create("resnet", block="BasicBlock", **resnet_kwargs)
    sd = _random_state(model, 1)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = {"featvec": model.get_featvec(torch.from_numpy(x)).numpy(), "forward_logits": model(torch.from_numpy(x)).numpy()}
    meta = {
        "constructor": {
            "class": "ResNet",
            "kwargs": {
                "block": {"upstream_file": "models/resnet.py", "class_ref": "BasicBlock"},
                "norm_layer": {"upstream_file": "torch.nn", "class_ref": "torch.nn.BatchNorm2d"},
                **resnet_kwargs,
            },
        },
        "call": "featvec = model.get_featvec(patches); forward_logits = model(patches)",
    }
    got = run_vector(_write_vector(tmp_path, "resnet", meta, {"sd": sd, "in": {"frames": x}, "out": want}))
    for name, ref in want.items():
        np.testing.assert_allclose(got[name], ref, rtol=1e-6, atol=1e-6, err_msg=name)

    pc_kwargs = {"global_feature_dim": 4, "local_feature_dim": 5, "num_glance_segments": 2, "num_focus_segments": 3, "num_classes": 2, "dropout": 0.2}
    model = vm.create("pooling_classifier", **pc_kwargs)
    sd = _random_state(model, 2)
    rng = np.random.default_rng(2)
    gf, lf = rng.random((2, 2, 4)).astype(np.float32), rng.random((2, 3, 5)).astype(np.float32)
    with torch.no_grad():
        logits, last = model(torch.from_numpy(gf), torch.from_numpy(lf))
    meta = {
        "constructor": {"class": "PoolingClassifier", "kwargs": {**pc_kwargs, "device": "cuda"}},
        "call": "logits, last_out = model(global_feat, local_feat)   (PoolingClassifier.forward)",
    }
    arrays = {"sd": sd, "in": {"g": gf, "l": lf}, "out": {"logits": logits.numpy(), "last_out": last.numpy()}}
    got = run_vector(_write_vector(tmp_path, "pooling", meta, arrays))
    np.testing.assert_allclose(got["logits"], logits.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["last_out"], last.numpy(), rtol=1e-6, atol=1e-6)
