"""TensorRT build plans (pure, no TensorRT needed) and, where TensorRT exists, real engines."""

from __future__ import annotations

import sys

import shutil
from pathlib import Path
from dataclasses import replace

import pytest

from videploy.bundle.manifest import BatchRange, TensorSpec, read_manifest, write_manifest
from videploy.errors import VideployError
from videploy.export.tensorrt_build import INT8_HINT, plan_build, updated_manifest


@pytest.fixture()
def ada_manifest(tiny_ada_bundle):
    return tiny_ada_bundle[1].manifest.with_updates(batch=BatchRange(1, 4, 8))


def test_profiles_come_from_the_batch_range_and_graph_shapes(ada_manifest):
    plan = plan_build(ada_manifest, "fp32", "10.3.0")
    assert [g.role for g in plan.graphs] == ["glance", "policy", "local"]
    local = plan.graphs[2]
    shapes = {p.name: (p.min, p.opt, p.max) for p in local.profile}
    assert shapes["frames"] == ((1, 1, 3, 32, 32), (4, 1, 3, 32, 32), (8, 1, 3, 32, 32))
    assert shapes["step"] == ((1,), (4,), (8,))
    assert list(shapes) == [t.name for t in ada_manifest.graph("local").inputs]
    assert [g.engine_file for g in plan.graphs] == ["glance.fp32.engine", "policy.fp32.engine", "local.fp32.engine"]
    assert plan.timing_cache_file == "timing.cache"


@pytest.mark.parametrize(
    "version, precision, typed, set_flags, clear_flags, converted",
    [
        ("10.3.0", "fp32", False, (), ("TF32",), False),
        ("10.3.0", "fp16", False, ("FP16",), (), False),
        ("10.13.2.6", "fp16", False, ("FP16",), (), False),
        ("11.0.0", "fp32", True, (), (), False),
        ("11.4.1", "fp16", True, (), (), True),
    ],
)
def test_precision_plan_per_tensorrt_major(ada_manifest, version, precision, typed, set_flags, clear_flags, converted):
    plan = plan_build(ada_manifest, precision, version, workspace_gb=2)
    assert (plan.strongly_typed, plan.set_flags, plan.clear_flags) == (typed, set_flags, clear_flags)
    assert plan.workspace_bytes == 2 * 2**30
    for g, spec in zip(plan.graphs, ada_manifest.graphs):
        if converted:  # TensorRT 11 has no FP16 flag: an fp16 graph is made from the fp32 one
            assert (g.convert_from, g.onnx_file) == (spec.file, f"{spec.role}.fp16.onnx")
        else:
            assert (g.convert_from, g.onnx_file) == (None, spec.file)
    text = "\n".join(plan.describe())
    assert f"TensorRT {version}" in text and ("strongly typed" in text) == typed


def test_existing_fp16_variant_is_used_not_converted(ada_manifest):
    graphs = tuple(replace(g, variants={"fp16": f"q/{g.role}.half.onnx"}) for g in ada_manifest.graphs)
    plan = plan_build(ada_manifest.with_updates(graphs=graphs), "fp16", "11.1")
    assert [(g.onnx_file, g.convert_from) for g in plan.graphs] == [(f"q/{r}.half.onnx", None) for r in ("glance", "policy", "local")]


def test_int8_needs_a_qdq_variant(ada_manifest):
    with pytest.raises(VideployError) as err:
        plan_build(ada_manifest, "int8", "11.0.0")
    assert "graph 'glance'" in str(err.value) and INT8_HINT in str(err.value)
    graphs = tuple(replace(g, variants={"int8": f"{g.role}.int8.onnx"}) for g in ada_manifest.graphs)
    m = ada_manifest.with_updates(graphs=graphs)
    p11 = plan_build(m, "int8", "11.0.0")
    assert p11.strongly_typed and p11.set_flags == () and p11.graphs[0].onnx_file == "glance.int8.onnx"
    p10 = plan_build(m, "int8", "10.3.0")
    assert not p10.strongly_typed and p10.set_flags == ("INT8",)


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0", "12.0.0"])
def test_unsupported_tensorrt_versions(ada_manifest, version):
    with pytest.raises(VideployError, match="10.x or 11.x"):
        plan_build(ada_manifest, "fp16", version)


def test_bad_requests(ada_manifest):
    with pytest.raises(VideployError, match="precision 'bf16'"):
        plan_build(ada_manifest, "bf16", "10.3.0")
    with pytest.raises(VideployError, match="workspace"):
        plan_build(ada_manifest, "fp32", "10.3.0", workspace_gb=0)
    with pytest.raises(VideployError, match="TensorRT version"):
        plan_build(ada_manifest, "fp32", "ten")
    g = ada_manifest.graphs[0]
    sym = replace(g, inputs=(TensorSpec("frames", ("batch", "T", 3, 32, 32)),))
    with pytest.raises(VideployError, match=r"symbolic dimensions \['T'\]"):
        plan_build(ada_manifest.with_updates(graphs=(sym,) + ada_manifest.graphs[1:]), "fp32", "10.3.0")


def test_manifest_update_round_trips(tmp_path, tiny_ada_bundle):
    """What build_engines writes: engines per precision, converted fp16 graphs, provenance; valid on read."""
    bundle = tmp_path / "b"
    shutil.copytree(tiny_ada_bundle[1].bundle, bundle)
    m = read_manifest(bundle)
    for precision, version in (("fp32", "10.3.0"), ("fp16", "11.0.0")):
        plan = plan_build(m, precision, version)
        for g in plan.graphs:  # stand-ins for the files TensorRT would write
            (bundle / g.engine_file).write_bytes(b"engine")
            if g.convert_from:
                (bundle / g.onnx_file).write_bytes(b"graph")
        m = updated_manifest(m, plan, built_at="2026-01-01T00:00:00+00:00")
        write_manifest(bundle, m)
    back = read_manifest(bundle)
    assert back == m
    local = back.graph("local")
    assert local.engines == {"fp32": "local.fp32.engine", "fp16": "local.fp16.engine"}
    assert local.variants == {"fp16": "local.fp16.onnx"}
    assert back.provenance["tensorrt"]["fp16"]["version"] == "11.0.0"
    assert back.provenance["tensorrt"]["fp32"]["clear_flags"] == ["TF32"]
    assert back.provenance["videploy"]  # export provenance kept


def test_build_without_tensorrt_says_how_to_install(tiny_clip_bundle):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover
        pytest.skip("TensorRT is installed; the missing-package message cannot be shown")
    from videploy.export.tensorrt_build import build_engines

    with pytest.raises(VideployError, match=r"building TensorRT engines needs the Python package 'tensorrt'.*pip install 'videploy\[tensorrt\]'"):
        build_engines(tiny_clip_bundle[1].bundle, "fp16")


@pytest.mark.tensorrt
def test_real_engines(tmp_path, tiny_ada_bundle):  # pragma: no cover - needs TensorRT and a GPU
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU machine)")
    from videploy.export.tensorrt_build import build_engines

    bundle = tmp_path / "b"
    shutil.copytree(tiny_ada_bundle[1].bundle, bundle)
    cache = tmp_path / "shared.cache"
    for precision in ("fp32", "fp16"):
        manifest, plan = build_engines(bundle, precision, workspace_gb=1, timing_cache=cache)
        for g in manifest.graphs:
            assert (bundle / g.engines[precision]).stat().st_size > 0
    assert (bundle / "timing.cache").stat().st_size > 0 and cache.stat().st_size > 0


class _FakeTensorRT:
    """Records the TensorRT API calls build_engines makes (the real one needs a GPU)."""

    def __init__(self, version: str):
        import types

        self.__version__ = version
        self.calls: list[tuple] = []
        self.last_parsed: str | None = None
        self.engine_bytes = lambda: b"ENGINE"  # what "building" returns
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level):
                pass

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                fake.calls.append(("shape", name, tuple(lo), tuple(opt), tuple(hi)))

        class Cache:
            def __init__(self, data):
                self.data = bytes(data)

            def serialize(self):
                return self.data + b"+"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("workspace", size))

            def set_flag(self, flag):
                fake.calls.append(("set_flag", flag))

            def clear_flag(self, flag):
                fake.calls.append(("clear_flag", flag))

            def add_optimization_profile(self, profile):
                pass

            def create_timing_cache(self, data):
                fake.calls.append(("cache_in", bytes(data)))
                self.cache = Cache(data)
                return self.cache

            def set_timing_cache(self, cache, ignore_mismatch):
                pass

            def get_timing_cache(self):
                return self.cache

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls.append(("network", flags))
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return fake.engine_bytes()

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                import onnx

                onnx.checker.check_model(onnx.load(path), full_check=True)
                half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(path).graph.initializer)
                fake.last_parsed = path
                fake.calls.append(("parse", path.rsplit("/", 1)[-1], "fp16 weights" if half else "fp32 weights"))
                return True

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, OnnxParser
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="ws")
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32")


@pytest.mark.parametrize("version", ["11.0.0", "10.3.0"])
def test_build_engines_orchestration_with_a_fake_tensorrt(tmp_path, monkeypatch, tiny_clip_bundle, version):
    """Everything around the TensorRT calls: fp16 graph written, flags, profiles, engines, cache, manifest."""
    import sys

    from videploy.export.tensorrt_build import build_engines

    fake = _FakeTensorRT(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    bundle = tmp_path / "b"
    shutil.copytree(tiny_clip_bundle[1].bundle, bundle)
    external = tmp_path / "caches" / "gpu.cache"
    manifest, plan = build_engines(bundle, "fp16", workspace_gb=0.5, timing_cache=external, verify=False)
    (g,) = manifest.graphs
    assert g.engines == {"fp16": "main.fp16.engine"} and (bundle / "main.fp16.engine").read_bytes() == b"ENGINE"
    assert (bundle / "timing.cache").read_bytes() == b"+" == external.read_bytes()
    assert ("shape", "video", (1, 4, 3, 32, 32), (2, 4, 3, 32, 32), (4, 4, 3, 32, 32)) in fake.calls
    assert ("workspace", 2**29) in fake.calls
    if version.startswith("11"):
        assert ("network", 1 << 5) in fake.calls  # strongly typed
        assert ("parse", "main.fp16.onnx", "fp16 weights") in fake.calls
        assert g.variants == {"fp16": "main.fp16.onnx"}
        assert not [c for c in fake.calls if c[0] == "set_flag"]
    else:
        assert ("network", 0) in fake.calls and ("set_flag", "FP16") in fake.calls
        assert ("parse", "main.onnx", "fp32 weights") in fake.calls
        assert g.variants == {}
    assert read_manifest(bundle) == manifest
    # a second build starts from the cache the first one saved
    fake.calls.clear()
    build_engines(bundle, "fp32", timing_cache=external, verify=False)
    assert ("cache_in", b"+") in fake.calls
    assert set(read_manifest(bundle).graphs[0].engines) == {"fp16", "fp32"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _fake_build_and_run(monkeypatch, version: str, engine_of=None) -> _FakeTensorRT:
    """A fake TensorRT that builds (records calls) and runs: the "engine" is the parsed ONNX file's bytes,
    which the runtime fake executes with onnxruntime; ``engine_of(path)`` may replace them."""
    from tests.runtime import fake_tensorrt

    fake_tensorrt.install(monkeypatch, version=version)
    trt = sys.modules["tensorrt"]
    build = _FakeTensorRT(version)
    build.engine_bytes = lambda: (engine_of or (lambda path: Path(path).read_bytes()))(build.last_parsed)
    for name in ("Builder", "OnnxParser", "NetworkDefinitionCreationFlag", "MemoryPoolType", "BuilderFlag"):
        setattr(trt, name, getattr(build, name))
    return build


@pytest.mark.parametrize("version, precision", [("11.0.0", "fp16"), ("10.3.0", "fp32")])
def test_build_verifies_engines_and_records_the_report(tmp_path, monkeypatch, tiny_clip_bundle, version, precision):
    from videploy.export.tensorrt_build import build_engines

    _fake_build_and_run(monkeypatch, version)
    bundle = tmp_path / "b"
    shutil.copytree(tiny_clip_bundle[1].bundle, bundle)
    manifest, _ = build_engines(bundle, precision)
    report = manifest.provenance["tensorrt"]["verification"][precision]
    assert report["passed"] and report["backend"].startswith("tensorrt") and "vs onnxruntime" in report["backend"]
    assert {r["graph"] for r in report["outputs"]} == {"main"} and report["batch_sizes"] == [1, 2]
    if precision == "fp16":  # the engine runs the converted fp16 graph: close, not equal
        assert 0 < max(r["max_rel"] for r in report["outputs"]) < 2e-2


def test_build_refuses_engines_that_disagree_and_leaves_the_bundle(tmp_path, monkeypatch, tiny_clip_bundle):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from videploy.export.tensorrt_build import build_engines

    def broken(path):
        m = onnx.load(path)
        for t in m.graph.initializer:  # a miscompiled engine: every weight off by 10%
            a = numpy_helper.to_array(t)
            if a.dtype == np.float32 and a.size > 1:
                t.CopyFrom(numpy_helper.from_array(a * 1.1, t.name))
        return m.SerializeToString()

    _fake_build_and_run(monkeypatch, "10.3.0", engine_of=broken)
    bundle = tmp_path / "b"
    shutil.copytree(tiny_clip_bundle[1].bundle, bundle)
    before = sorted(p.name for p in bundle.iterdir())
    with pytest.raises(VideployError, match="(?s)differ from the ONNX graphs beyond the tolerance.*left unchanged"):
        build_engines(bundle, "fp32")
    assert sorted(p.name for p in bundle.iterdir()) == before and read_manifest(bundle).graphs[0].engines == {}
    manifest, _ = build_engines(bundle, "fp32", verify=False)  # --no-verify keeps them
    assert manifest.graphs[0].engines == {"fp32": "main.fp32.engine"}


def test_dry_run_converts_fp16_graphs_without_tensorrt(tmp_path, tiny_clip_bundle, capsys):
    from videploy.cli import main

    assert main(["build", str(tiny_clip_bundle[1].bundle), "--dry-run", "--tensorrt-version", "11.0.0"]) == 0
    assert "graph 'main': fp16 conversion checked" in capsys.readouterr().out
