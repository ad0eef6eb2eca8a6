"""The TensorRT backend's own promises, checked on the simulated TensorRT / CUDA (see fake_tensorrt).

The contract test already runs this backend against the same checks as every other one; here:
the memory plan (buffers allocated once, states never copied to the host between AdaFocusV3
steps), stale-handle detection, and the activation / engine errors.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from tests.runtime import fake_tensorrt
from tests.runtime.toys import SIZE, TF, D
from videploy.bundle.manifest import read_manifest, write_manifest
from videploy.errors import VideployError
from videploy.runtime.adaptive import AdaptiveRunner


def backend(bundle, **kw):
    from videploy.runtime.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(bundle, device="cuda", **kw)


def test_states_stay_on_the_device_between_steps(monkeypatch, adaptive_dir):
    cuda = fake_tensorrt.install(monkeypatch)
    b = backend(adaptive_dir)
    runner = AdaptiveRunner(b)
    videos = list(np.random.default_rng(0).standard_normal((11, 6, 3, SIZE, SIZE)).astype(np.float32))
    full = runner.run(videos, thresholds=[-np.inf] * (TF + 1))
    ent = np.array([oc.entropies for oc in full])
    eta = [float(np.median(ent[:, t])) for t in range(TF + 1)]
    engine_buffers = sum(len(e.buffers) for e in b._engines.values())
    runner.run(videos, thresholds=eta, batch_size=4, continuous=True)  # warms the row pools
    mallocs = cuda.mallocs
    cuda.copies.clear()
    outcomes = runner.run(videos, thresholds=eta, batch_size=4, continuous=True)
    assert len({oc.exit for oc in outcomes}) > 1
    # device addresses that hold features and states: engine buffers and the row-size pools of states/features
    state_like = {"global_state", "next_local_state", "local_state", "featmap", "global_feat"}
    ranges = [(buf.ptr, buf.ptr + buf.nbytes) for e in b._engines.values() for name, buf in e.buffers.items() if name in state_like]
    row_sizes = {int(np.prod(t.shape[1:])) * 4 for g in b.manifest.graphs for t in (*g.inputs, *g.outputs) if t.name in state_like}
    ranges += [(buf.ptr, buf.ptr + buf.nbytes) for rb, pool in b._pool.items() if rb in row_sizes for buf in pool]
    for n, src in cuda.d2h():
        assert not any(lo <= src < hi for lo, hi in ranges), f"{n} bytes of a state / feature tensor were copied to the host"
    # what does come back per local call: the logits (num_classes floats per row; the exit criterion is
    # computed from them on the host, batch-invariantly), never the graph's other outputs
    local_logits = b._engines["local"].buffers["logits"].ptr
    local_entropy = b._engines["local"].buffers["entropy"].ptr
    assert any(src == local_logits for _, src in cuda.d2h()) and not any(src == local_entropy for _, src in cuda.d2h())
    assert cuda.mallocs == mallocs, "a second run must reuse the buffers allocated by the first"
    # one buffer per engine I/O tensor, plus a few pooled per row size (handles alive at once, not one per call)
    # (states of two roles share the 64-byte-row pool: pool states, newcomers' states and the merged result)
    assert all(len(pool) <= 5 for pool in b._pool.values()) and cuda.mallocs == engine_buffers + sum(map(len, b._pool.values()))
    b.close()
    assert cuda.allocations == {}  # everything freed


def test_stale_handles_are_refused(monkeypatch, adaptive_dir):
    fake_tensorrt.install(monkeypatch)
    b = backend(adaptive_dir)
    frames = np.zeros((2, 3, 3, SIZE, SIZE), np.float32)
    old = b.run("glance", {"frames": frames}, fetch=["entropy"])["global_state"]
    kept = b.take(old, [0, 1])
    b.run("glance", {"frames": frames + 1}, fetch=["entropy"])
    with pytest.raises(VideployError, match="used after the engine that produced it ran again"):
        b.to_host(old)
    assert b.to_host(kept).shape == (2, D)  # a take() copy survives


def test_activation_and_engine_errors(monkeypatch, tmp_path, adaptive_dir, static_dir):
    fake_tensorrt.install(monkeypatch, version="8.6.1")
    with pytest.raises(VideployError, match="needs TensorRT >= 10.0.*found 8.6.1"):
        backend(adaptive_dir)
    fake_tensorrt.install(monkeypatch, device_count=0)
    with pytest.raises(VideployError, match="needs an NVIDIA GPU"):
        backend(adaptive_dir)
    fake_tensorrt.install(monkeypatch, profile_max=4)
    with pytest.raises(VideployError, match="built for batches up to 4, the bundle says 8"):
        backend(adaptive_dir)
    fake_tensorrt.install(monkeypatch)
    no_engines = shutil.copytree(static_dir, tmp_path / "plain")
    m = read_manifest(no_engines)
    write_manifest(no_engines, m.with_updates(graphs=tuple(dataclasses.replace(g, engines={}) for g in m.graphs)))
    with pytest.raises(VideployError, match="no TensorRT engines.*videploy build"):
        backend(no_engines)
    with pytest.raises(VideployError, match="no fp16 TensorRT engine for graph 'main'.*--precision fp16"):
        backend(static_dir, precision="fp16")
    broken = shutil.copytree(static_dir, tmp_path / "broken")
    (broken / "main.fp32.engine").write_bytes(b"not an engine")
    with pytest.raises(VideployError, match="cannot load engine.*rebuild"):
        backend(broken)


def test_recognizer_on_tensorrt(monkeypatch, static_dir, adaptive_dir):
    from videploy import runtime
    from videploy.runtime.samples import sample_video_path

    fake_tensorrt.install(monkeypatch)
    for bundle, kw in ((static_dir, {"views": "1x3"}), (adaptive_dir, {})):
        a = runtime.load(bundle, backend="tensorrt", device="cuda").predict(sample_video_path(), **kw)
        b = runtime.load(bundle, threads=1).predict(sample_video_path(), **kw)
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-5, atol=1e-7)
