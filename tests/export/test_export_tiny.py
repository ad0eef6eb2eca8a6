"""export_bundle on the tiny test models: bundle contents, graphs, manifest, atomicity, options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.export.tiny_models import TinyAdaFocus, TinyClipNet
from videploy.bundle.manifest import BatchRange, read_manifest
from videploy.errors import VideployError
from videploy.export import api
from videploy.export.api import RANDOM_WEIGHTS_WARNING, export_bundle
from videploy.export.verify import Tolerance
from videploy.models.flops import count_gflops


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def test_bundle_files_and_self_contained_graph(tiny_clip_bundle):
    model, result = tiny_clip_bundle
    root = result.bundle
    assert sorted(p.name for p in root.iterdir()) == ["main.onnx", "manifest.json"]
    proto = onnx.load(str(root / "main.onnx"), load_external_data=False)
    # weights inline: no initializer points at an external file
    assert proto.graph.initializer and all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    onnx.checker.check_model(proto, full_check=True)
    # eval-mode export: the module's Dropout left no trace
    assert "Dropout" not in {n.op_type for n in proto.graph.node}
    # opset 17+ keeps LayerNormalization one op
    assert "LayerNormalization" in {n.op_type for n in proto.graph.node}
    # no siblings left over by the staging directory
    assert [p.name for p in root.parent.iterdir()] == [root.name]


def test_manifest_describes_the_graph(tiny_clip_bundle):
    model, result = tiny_clip_bundle
    m = read_manifest(result.bundle)
    assert m == result.manifest
    assert (m.family, m.model_name, m.num_classes, m.precision) == ("video_focalnet", "tiny_clip", 5, "fp32")
    assert m.config == model.official_kwargs()
    assert m.preprocessing == model.preprocessing()
    assert m.batch == BatchRange(1, 2, 4)
    (g,) = m.graphs
    proto = onnx.load(str(result.bundle / g.file))
    assert m.opset == m.provenance["opset"] == proto.opset_import[0].version == 20  # torch 2.13's default
    assert [(t.name, t.shape, t.dtype) for t in g.inputs] == [("video", ("batch", 4, 3, 32, 32), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in g.outputs] == [("logits", ("batch", 5), "float32")]
    assert g.gflops == pytest.approx(count_gflops(model, model.example_inputs(1)))
    assert m.gflops_per_view == g.gflops
    assert m.weights is None and m.labels is None and m.early_exit is None
    assert RANDOM_WEIGHTS_WARNING in result.warnings
    for key in ("videploy", "torch", "onnx", "onnxruntime", "onnxslim", "exported_at"):
        assert m.provenance[key]
    assert m.provenance["simplified"] is True and m.provenance["checkpoint_sha256"] is None


def test_verification_is_recorded(tiny_clip_bundle):
    _, result = tiny_clip_bundle
    v = result.manifest.verification
    assert v["passed"] is True and v["batch_sizes"] == [1, 2]
    assert "bikes.mp4" in v["inputs"] or "synthetic" in v["inputs"]
    rows = v["outputs"]
    assert [(r["graph"], r["output"], r["call"]) for r in rows] == [("main", "logits", "batch 1"), ("main", "logits", "batch 2")]
    for r in rows:
        assert r["passed"] and r["max_rel"] < 1e-4 and r["cosine"] > 0.9999 and r["top1"] == 1.0


def test_dynamic_batch_runs_and_matches_torch(tiny_clip_bundle):
    model, result = tiny_clip_bundle
    sess = _session(result.bundle / "main.onnx")
    for n in (1, 3, 7):  # 3 and 7 are sizes the export never traced nor verified
        x = torch.randn(n, 4, 3, 32, 32, generator=torch.Generator().manual_seed(n))
        (got,) = sess.run(None, {"video": x.numpy()})
        with torch.inference_mode():
            ref = model(x).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_adafocus_bundle(tiny_ada_bundle):
    model, result = tiny_ada_bundle
    m = result.manifest
    assert [g.role for g in m.graphs] == ["glance", "policy", "local"]
    assert m.early_exit == model.early_exit()
    assert m.gflops_per_view == model.early_exit().exit_gflops[-1]
    policy, local = m.graph("policy"), m.graph("local")
    assert [(t.name, t.dtype) for t in policy.outputs] == [("frame_indices", "int64"), ("actions", "float32"), ("boxes", "float32")]
    assert local.input("step").shape == ("batch",) and local.input("step").dtype == "int64"
    for g, module in zip(m.graphs, model.deploy_graphs().values()):
        assert g.gflops == pytest.approx(count_gflops(module, module.example_inputs(1)))
        assert [t.name for t in g.inputs] == list(module.input_names)
        assert [t.name for t in g.outputs] == list(module.output_names)
        assert all(t.shape[0] == "batch" for t in g.inputs + g.outputs)
    ops = {n.op_type for n in onnx.load(str(result.bundle / "local.onnx")).graph.node}
    assert "GridSample" in ops and "AffineGrid" not in ops
    calls = {(r["graph"], r["call"]) for r in m.verification["outputs"]}
    # every exit of the chain, at both batch sizes
    for n in (1, 2):
        assert ("glance", f"batch {n} exit 0") in calls and ("policy", f"batch {n}") in calls
        for t in range(3):
            assert ("local", f"batch {n} step {t} exit {t + 1}") in calls
    fi = [r for r in m.verification["outputs"] if r["output"] == "frame_indices"]
    assert fi and all(r["exact"] and r["passed"] for r in fi)


def test_verification_failure_leaves_no_bundle(tmp_path):
    out = tmp_path / "never"
    impossible = Tolerance(rtol=0.0, atol=0.0, min_cosine=1.1)
    with pytest.raises(VideployError, match=r"(?s)verification failed for 'tiny'.*main\.logits \[batch 1\].*no bundle was written"):
        export_bundle(TinyClipNet(), out, name="tiny", tolerance=impossible)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_export_leaves_no_bundle_and_keeps_the_old_one(tmp_path, monkeypatch, exc):
    """Raise after the first graph file is already written in the staging directory."""
    old = tmp_path / "b"
    old.mkdir()
    (old / "manifest.json").write_text("{}")  # an existing bundle to be replaced with --overwrite
    real = api._graph_gflops
    written = []

    def flaky(module, inputs):
        written.extend(p.name for p in tmp_path.glob(".b.partial-*/*.onnx"))
        if type(module).__name__ == "TinyPolicy":
            raise exc
        return real(module, inputs)

    monkeypatch.setattr(api, "_graph_gflops", flaky)
    with pytest.raises(type(exc)):
        export_bundle(TinyAdaFocus(), old, name="tiny", overwrite=True)
    assert "glance.onnx" in written  # the failure really happened mid-export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert (old / "manifest.json").read_text() == "{}"


def test_refusals_before_any_work(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(VideployError, match="already exists.*--overwrite"):
        export_bundle(TinyClipNet(), tmp_path / "exists")
    with pytest.raises(VideployError, match="not a videploy bundle"):
        export_bundle(TinyClipNet(), tmp_path / "exists", overwrite=True)
    with pytest.raises(VideployError, match="opset 16"):
        export_bundle(TinyClipNet(), tmp_path / "x", opset=16)
    with pytest.raises(VideployError, match="label file"):
        export_bundle(TinyClipNet(), tmp_path / "x", labels=tmp_path / "missing.txt")
    wrong = tmp_path / "labels.txt"
    wrong.write_text("a\nb\n")
    with pytest.raises(VideployError, match="has 2 entries but .* 5 classes"):
        export_bundle(TinyClipNet(), tmp_path / "x", labels=wrong)
    with pytest.raises(VideployError, match="overrides apply to a model name"):
        export_bundle(TinyClipNet(), tmp_path / "x", overrides={"num_classes": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists", "labels.txt"]


def test_options_opset_no_simplify_labels_overwrite(tmp_path, tiny_clip_bundle):
    _, simplified = tiny_clip_bundle
    labels = tmp_path / "k5.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(5)) + "\n")
    out = tmp_path / "b"
    result = export_bundle(TinyClipNet(), out, name="tiny", opset=18, simplify=False, labels=labels, batch=2)
    m = result.manifest
    assert m.opset == 18 and onnx.load(str(out / "main.onnx")).opset_import[0].version == 18
    assert m.provenance["simplified"] is False
    assert m.labels == "labels.txt" and (out / "labels.txt").read_text() == labels.read_text()
    assert m.batch == BatchRange(2, 2, 2) and not m.batch.dynamic
    n_plain = len(onnx.load(str(out / "main.onnx")).graph.node)
    n_slim = len(onnx.load(str(simplified.bundle / "main.onnx")).graph.node)
    assert n_slim < n_plain  # onnxslim really did something
    again = export_bundle(TinyClipNet(), out, name="tiny2", overwrite=True)
    assert read_manifest(out).model_name == "tiny2" and not (out / "labels.txt").exists()
    assert json.loads((out / "manifest.json").read_text())["weights"] is None
    assert again.manifest.batch == BatchRange(1, 4, 16)
