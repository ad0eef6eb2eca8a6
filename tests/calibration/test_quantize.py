"""INT8 bundles: explicit Q/DQ graphs, what runs them, the report and the cache."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from videploy.bundle.bundle import Bundle
from videploy.errors import VideployError

WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _graph(bundle: Bundle, role: str, variant: str) -> onnx.GraphProto:
    return onnx.load(str(bundle.graph_file(role, variant))).graph


def _zero_points(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Tensor each Q/DQ node reads or writes -> its zero point."""
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return {n.input[0]: inits[n.input[2]] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}


@pytest.mark.parametrize("fixture", ["int8_clip", "int8_ada"])
def test_tensorrt_variant_is_symmetric_qdq_with_per_channel_weights(request, fixture):
    bundle = request.getfixturevalue(fixture).bundle
    quantized_roles = 0
    for g in bundle.manifest.graphs:
        assert set(g.variants) >= {"int8", "int8-cpu"}
        graph = _graph(bundle, g.role, "int8")
        ops = [n.op_type for n in graph.node]
        if "QuantizeLinear" not in ops:
            continue  # a graph kept in float (recorded in the manifest; checked elsewhere)
        quantized_roles += 1
        assert "DequantizeLinear" in ops
        zps = _zero_points(graph)
        assert zps and all(z.dtype == np.int8 and not z.any() for z in zps.values()), "TensorRT needs int8 zero points of 0"
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        producers = {o: n for n in graph.node for o in n.output}
        per_channel = 0
        for n in graph.node:
            if n.op_type not in WEIGHTED:
                continue
            w = producers.get(n.input[1])
            if w is not None and w.op_type == "DequantizeLinear" and w.input[0] in inits:
                assert inits[w.input[0]].dtype == np.int8
                scale = inits[w.input[1]]
                per_channel += scale.size > 1
        assert per_channel >= 1, f"graph '{g.role}' has no per-channel weight scales"
        # TensorRT placement: Q/DQ in front of weighted layers; graph outputs come out in float
        outs = {o.name for o in graph.output}
        assert not any(n.op_type == "DequantizeLinear" and n.output[0] in outs for n in graph.node)
    assert quantized_roles >= 1


def test_cpu_variant_uses_uint8_activations(int8_ada):
    bundle = int8_ada.bundle
    graph = _graph(bundle, "local", "int8-cpu")
    dtypes = {z.dtype for z in _zero_points(graph).values()}
    assert {np.dtype(np.uint8), np.dtype(np.int8)} <= dtypes  # uint8 activations, int8 weights
    # the quantizer routes graph outputs through Q/DQ; they are given back their float values
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert all(producers[o.name] != "DequantizeLinear" for o in graph.output)
    rec = int8_ada.bundle.manifest.provenance["int8"]
    assert "TensorRT" in rec["variants"]["int8"]["target"]
    assert "CPU" in rec["variants"]["int8-cpu"]["target"]


@pytest.mark.parametrize("variant", ["int8", "int8-cpu"])
def test_quantized_bundle_runs_in_onnxruntime_and_predict(int8_ada, calib_videos, capsys, variant):
    from videploy.cli import main

    video = str(calib_videos / "moving.mp4")
    assert main(["predict", str(int8_ada.bundle.root), video, "--precision", variant, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    result = out[0] if isinstance(out, list) else out
    assert "adaptive" in json.dumps(result)

    import videploy.runtime as rt

    rec = rt.load(int8_ada.bundle.root, precision=variant)
    rec.predict(video)
    assert rec.counters.calls["local"] >= 1


def test_agreement_report_in_manifest_and_inspect(int8_ada, capsys):
    from videploy.cli import main

    rec = int8_ada.bundle.manifest.provenance["int8"]
    assert rec["method"] == "entropy" and rec["calibration"]["pipeline_aware"] is True
    held = rec["calibration"]["held_out_clips"]
    assert held >= 2 and rec["calibration"]["clips"] >= 2 * held - 2
    report = rec["agreement"]["int8"]
    assert report["clips"] == held
    logits = [o for o in report["outputs"] if o["output"] == "logits"]
    exits = sorted(o["exit"] for o in logits)
    ee = int8_ada.bundle.early_exit
    assert exits == list(range(ee.num_steps + 1)), "one logits row per exit"
    for o in logits:
        assert -1.0 <= o["cosine_min"] <= o["cosine_mean"] + 1e-12 <= 1.0 + 1e-9
        assert 0.0 <= o["top1"] <= 1.0
    assert 0.0 <= report["cube_agreement"] <= 1.0 and 0.0 <= report["exit_step_agreement"] <= 1.0
    assert len(report["exit_steps_fp32"]) == held
    assert main(["inspect", str(int8_ada.bundle.root)]) == 0
    text = capsys.readouterr().out
    assert "INT8" in text and "exit step agrees" in text and "local.logits exit 1" in text and "stayed in float" in text


def test_static_report_and_float_record(int8_clip):
    rec = int8_clip.bundle.manifest.provenance["int8"]
    report = rec["agreement"]["int8-cpu"]
    (row,) = [o for o in report["outputs"] if o["output"] == "logits"]
    assert row["exit"] is None and row["rows"] == report["clips"]
    assert report["exit_step_agreement"] is None
    assert [s["graph"] for s in rec["sensitivity"]] == ["main"]


def test_second_method_reuses_recorded_inputs(fp32_ada, int8_ada, calib_videos, cache_dir, tmp_path, monkeypatch):
    from tests.calibration.conftest import OPTIONS
    from videploy.calibration.int8 import QuantizeOptions, quantize_bundle, videos

    def no_decoding(*a, **k):
        raise AssertionError("videos were decoded again")

    monkeypatch.setattr(videos, "iter_clips", no_decoding)
    res = quantize_bundle(fp32_ada, [calib_videos], tmp_path / "mm", QuantizeOptions(cache_dir=cache_dir, method="minmax", targets=("int8",), sensitivity=False, **OPTIONS))
    assert res.inputs_cached
    assert res.bundle.manifest.provenance["int8"]["method"] == "minmax"
    assert sorted(p.name.rsplit("-", 1)[-1] for p in (cache_dir / "ranges").glob("local-*.json")) == ["entropy.json", "minmax.json"]
    # another clip count is other data: decoding is needed
    with pytest.raises(AssertionError, match="decoded again"):
        quantize_bundle(fp32_ada, [calib_videos], tmp_path / "mm2", QuantizeOptions(cache_dir=cache_dir, targets=("int8",), clips_per_video=3, max_clips=9, holdout_every=3))


def test_keep_float_graph_points_at_the_fp32_file(fp32_ada, calib_videos, cache_dir, tmp_path):
    from tests.calibration.conftest import OPTIONS
    from videploy.calibration.int8 import QuantizeOptions, quantize_bundle

    res = quantize_bundle(fp32_ada, [calib_videos], tmp_path / "kf", QuantizeOptions(cache_dir=cache_dir, targets=("int8",), keep_float=("policy",), sensitivity=False, **OPTIONS))
    policy = res.bundle.graph("policy")
    assert policy.variants["int8"] == policy.file
    (row,) = res.bundle.manifest.provenance["int8"]["float"]
    assert row["graph"] == "policy" and row["whole_graph"] and "--keep-float" in row["reason"]
    assert res.agreement["int8"].outputs  # the chain still runs with --precision int8


def test_build_int8_plan_uses_the_qdq_graphs(int8_ada):
    from videploy.export.tensorrt_build import plan_build

    m = int8_ada.bundle.manifest
    for version, typed in (("11.0.0", True), ("10.3.0", False)):
        plan = plan_build(m, "int8", version)
        assert [g.onnx_file for g in plan.graphs] == [g.variants["int8"] for g in m.graphs]
        assert plan.strongly_typed == typed


@pytest.mark.parametrize("version", ["11.0.0", "10.3.0"])
def test_simulated_tensorrt_builds_int8_engines_from_the_qdq_graphs(int8_ada, tmp_path, monkeypatch, version):
    import shutil
    import sys

    from tests.export.test_tensorrt_build import _FakeTensorRT
    from videploy.export.tensorrt_build import build_engines

    fake = _FakeTensorRT(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    bundle = shutil.copytree(int8_ada.bundle.root, tmp_path / "b")
    manifest, _ = build_engines(bundle, "int8", verify=False)  # the parse is what is simulated; engine verification has its own tests
    parsed = [c[1] for c in fake.calls if c[0] == "parse"]
    assert parsed == [g.variants["int8"] for g in manifest.graphs]  # the ONNX full check passed on each
    assert all(g.engines["int8"] == f"{g.role}.int8.engine" for g in manifest.graphs)
    assert (("set_flag", "INT8") in fake.calls) == version.startswith("10")


def test_errors_name_the_problem(fp32_ada, calib_videos, tmp_path):
    from videploy.calibration.int8 import QuantizeOptions, quantize_bundle

    with pytest.raises(VideployError, match="not one of"):
        quantize_bundle(fp32_ada, [calib_videos], tmp_path / "x", QuantizeOptions(method="kl"))
    with pytest.raises(VideployError, match="--keep-float names graph 'head'"):
        quantize_bundle(fp32_ada, [calib_videos], tmp_path / "x", QuantizeOptions(keep_float=("head",)))
    with pytest.raises(VideployError, match="does not exist"):
        quantize_bundle(fp32_ada, [tmp_path / "missing.mp4"], tmp_path / "x", QuantizeOptions(cache_dir=tmp_path))
    with pytest.raises(VideployError, match="new directory"):
        quantize_bundle(fp32_ada, [calib_videos], fp32_ada, QuantizeOptions(cache_dir=tmp_path))
    assert not (tmp_path / "x").exists()


def test_manifest_accepts_the_cpu_variant_only_as_a_variant(int8_ada):
    from videploy.bundle.manifest import Manifest

    d = int8_ada.bundle.manifest.to_dict()
    Manifest.from_dict(d)
    d["graphs"][0]["engines"] = {"int8-cpu": "x.engine"}
    with pytest.raises(VideployError, match="engines.int8-cpu"):
        Manifest.from_dict(d)
    d["graphs"][0]["engines"] = {}
    d["graphs"][0]["variants"]["int4"] = "x.onnx"
    with pytest.raises(VideployError, match="variants.int4"):
        Manifest.from_dict(d)
    assert not math.isnan(int8_ada.agreement["int8"].min_logit_cosine())


def test_bench_times_int8_next_to_fp32(int8_clip, capsys):
    from videploy.cli import main

    root = str(int8_clip.bundle.root)
    args = ["bench", root, "--backend", "onnxruntime,onnxruntime@int8-cpu", "--batch", "2", "--repeat", "2", "--warmup", "0", "--videos", "2", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in report["backends"]] == ["onnxruntime", "onnxruntime@int8-cpu"]
    assert all(b["status"] == "ok" for b in report["backends"])
    assert main(["bench", root, "--backend", "onnxruntime@", "--repeat", "1"]) == 2  # a variant name is required


def test_cli_quantize_prints_the_report(fp32_clip, int8_clip, calib_videos, cache_dir, tmp_path, capsys):
    from videploy.cli import main

    out = tmp_path / "cli"
    args = ["quantize", str(fp32_clip), "--videos", str(calib_videos), "-o", str(out), "--cache-dir", str(cache_dir),
            "--clips-per-video", "4", "--max-clips", "12", "--holdout-every", "3", "--target", "int8", "--method", "percentile"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "from the cache" in text and "int8 vs fp32 on 4 held-out clip(s)" in text and "main.logits" in text
    assert Bundle.open(out).graph("main").variants == {"int8": "main.int8.onnx"}
    assert main(args) == 2  # the output exists: not overwritten without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["quantize", "--help"])
    assert "TensorRT 11" in capsys.readouterr().out


def test_crop_coordinates_stay_in_float(int8_ada):
    """AdaFocusV3's local graph crops at the policy's action: the grid it samples at must not be
    quantized (8-bit grid steps move every crop), while the convolutions are."""
    for variant in ("int8", "int8-cpu"):
        g = _graph(int8_ada.bundle, "local", variant)
        producers = {o: n for n in g.node for o in n.output}
        samplers = [n for n in g.node if n.op_type == "GridSample"]
        assert samplers
        for n in samplers:
            grid = producers.get(n.input[1])
            assert grid is None or grid.op_type != "DequantizeLinear", variant
        convs = [n for n in g.node if n.op_type == "Conv"]
        assert any(producers.get(n.input[0]) is not None and producers[n.input[0]].op_type == "DequantizeLinear" for n in convs), variant
