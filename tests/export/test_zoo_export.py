"""Every zoo model, at a small configuration: exports, verifies, and runs from the bundle alone.

"Alone" means a fresh Python process in which ``import torch`` fails: it reads the manifest,
decodes the sample video with the manifest's preprocessing (``videploy.runtime.video``), runs the
graphs with onnxruntime (the AdaFocusV3 chain as the runtime runs it) and writes the outputs; this
process compares them with the PyTorch model rebuilt from the same seed. Zoo names whose small
configurations coincide (the Video-FocalNet sizes differ only in the overridden widths/depths)
share one export.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.export.conftest import small_overrides
from videploy.export.torch_backend import TorchBackend
from videploy.export.verify import batch_of, real_views
from videploy.runtime.compare import record_calls
from videploy.models import available, create

REPO = Path(__file__).resolve().parents[2]
ZOO = available()

STANDALONE = textwrap.dedent(
    """
    import sys
    sys.modules["torch"] = None  # the bundle must run without torch
    from pathlib import Path
    import numpy as np
    from videploy.export.verify import batch_of, real_views
    from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from videploy.runtime.compare import record_calls

    bundle, out = Path(sys.argv[1]), sys.argv[2]
    backend = OnnxRuntimeBackend(bundle, threads=1)
    view, _ = real_views(backend.manifest.preprocessing)
    video = batch_of(view, 2)
    results = {}
    for i, call in enumerate(record_calls(backend, video)):  # the runtime's path (AdaFocusV3: its chain)
        for name, value in call.outputs.items():
            results[f"{i}/{call.role}/{name}"] = value
    assert "torch" not in sys.modules or sys.modules["torch"] is None
    np.savez(out, **results)
    """
)


def _torch_outputs(name: str, bundle) -> dict[str, np.ndarray]:
    torch.manual_seed(0)  # export builds random weights from seed 0 too
    model = create(name, **small_overrides(name))
    view, _ = real_views(model.preprocessing())
    video = batch_of(view, 2)
    out = {}
    for i, call in enumerate(record_calls(TorchBackend(bundle, model=model), video)):
        for n, v in call.outputs.items():
            out[f"{i}/{call.role}/{n}"] = v
    return out


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_exports_verifies_and_runs_without_torch(name, zoo_export, tmp_path):
    result = zoo_export(name)
    m = result.manifest
    assert m.verification["passed"] and result.report.passed
    torch.manual_seed(0)
    assert m.config == create(name, **small_overrides(name)).official_kwargs()
    assert m.num_classes == 7 and m.weights is None
    for g in m.graphs:
        assert g.gflops > 0
    if m.early_exit is not None:
        assert len(m.early_exit.exit_gflops) == m.early_exit.num_steps + 1
        assert m.gflops_per_view == pytest.approx(m.early_exit.exit_gflops[-1])

    out = tmp_path / "out.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", STANDALONE, str(result.bundle), str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = dict(np.load(out))
    ref = _torch_outputs(name, result.bundle)
    if m.early_exit is None:  # the monolithic PyTorch forward too, outside any backend
        torch.manual_seed(0)
        model = create(name, **small_overrides(name))
        view, _ = real_views(model.preprocessing())
        with torch.inference_mode():
            np.testing.assert_allclose(ref["0/main/logits"], model(torch.from_numpy(batch_of(view, 2))).numpy(), rtol=1e-5, atol=1e-6)
    assert sorted(got) == sorted(ref)
    for key, r in ref.items():
        g = got[key]
        if r.dtype.kind in "iub":
            np.testing.assert_array_equal(g, r, err_msg=key)
        else:
            scale = max(float(np.abs(r).max()), 1e-12)
            assert float(np.abs(g - r).max()) <= 1e-4 + 1e-4 * scale, key


def test_checkpoint_weights_are_exported(tmp_path):
    """--checkpoint: the bundle computes the checkpoint's model (not seed 0's) and records its hash."""
    import hashlib

    import onnxruntime as ort

    from videploy.export.api import export_bundle

    overrides = small_overrides("stam_8")
    torch.manual_seed(123)
    trained = create("stam_8", **overrides)
    ckpt = tmp_path / "own.pth"
    torch.save({"model": trained.state_dict(), "epoch": 3}, ckpt)
    result = export_bundle("stam_8", tmp_path / "b", overrides=overrides, checkpoint=ckpt)
    m = result.manifest
    assert m.weights == {"file": "own.pth", "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    assert m.provenance["checkpoint_sha256"] == m.weights["sha256"]
    assert not any("RANDOM" in w for w in result.warnings)
    x = torch.randn(2, 8, 3, 32, 32)
    sess = ort.InferenceSession(str(tmp_path / "b" / "main.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"video": x.numpy()})
    with torch.inference_mode():
        ref = trained(x).numpy()
        torch.manual_seed(0)
        random_init = create("stam_8", **overrides)(x).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert np.abs(got - random_init).max() > 1e-3
