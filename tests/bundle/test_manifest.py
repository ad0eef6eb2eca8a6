"""The bundle contract (videploy.bundle): manifest round trip, validation errors, atomic writing.

Pure standard library + the manifest module: no export needed, so these run in milliseconds.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from videploy.bundle import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    BatchRange,
    EarlyExit,
    GraphSpec,
    Manifest,
    Preprocessing,
    TensorSpec,
    read_manifest,
    staged_bundle,
    updating_bundle,
    write_manifest,
)
from videploy.errors import VideployError

PRE = Preprocessing(num_frames=8, sampling="clip", crop_size=(224, 224), resize_short=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), frame_interval=4, num_clips=4, num_crops=3)


def _main_manifest(**changes) -> Manifest:
    m = Manifest(
        family="video_focalnet",
        model_name="video_focalnet_tiny",
        config={"embed_dim": 96, "depths": [2, 2, 6, 2]},
        num_classes=400,
        preprocessing=PRE,
        graphs=(
            GraphSpec(
                role="main",
                file="main.onnx",
                inputs=(TensorSpec("video", ("batch", 8, 3, 224, 224)),),
                outputs=(TensorSpec("logits", ("batch", 400)),),
                gflops=39.6,
            ),
        ),
        batch=BatchRange(1, 4, 8),
        weights={"file": "ckpt.pth", "sha256": "ab" * 32},
        verification={"passed": True},
        provenance={"torch": "2.13.0"},
        opset=20,
        labels="labels.txt",
    )
    return m.with_updates(**changes)


def _ada_manifest() -> Manifest:
    def g(role, ins, outs, gflops):
        return GraphSpec(role=role, file=f"{role}.onnx", inputs=tuple(TensorSpec(*t) for t in ins), outputs=tuple(TensorSpec(*t) for t in outs), gflops=gflops)

    return Manifest(
        family="adafocusv3",
        model_name="adafocusv3_mbv2_r50",
        config={"num_segments": 48},
        num_classes=200,
        preprocessing=Preprocessing(num_frames=48, sampling="segments", crop_size=(224, 224), resize_short=256, mean=(0.5,) * 3, std=(0.5,) * 3),
        graphs=(
            g("glance", [("frames", ("batch", 16, 3, 224, 224))], [("logits", ("batch", 200)), ("entropy", ("batch",))], 4.8),
            g("policy", [("featmap", ("batch", 16, 1280, 7, 7))], [("frame_indices", ("batch", 16, 1), "int64")], 0.01),
            g("local", [("frames", ("batch", 1, 3, 224, 224)), ("step", ("batch",), "int64")], [("logits", ("batch", 200))], 1.3),
        ),
        early_exit=EarlyExit(
            num_segments=48,
            glance_indices=tuple(range(1, 48, 3)),
            num_steps=16,
            frames_per_cube=1,
            patch_size=128,
            exit_gflops=tuple(4.8 + 1.3 * t for t in range(17)),
            thresholds=(math.inf,) + tuple(0.5 for _ in range(15)) + (-math.inf,),
        ),
    )


def _write_files(root: Path, m: Manifest) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for rel in m.files():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")


# --- round trip ---------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [_main_manifest, _ada_manifest])
def test_round_trip_through_json_and_disk(tmp_path, make):
    m = make()
    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON
    assert Manifest.from_dict(json.loads(json.dumps(d))) == m
    _write_files(tmp_path, m)
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert back == m
    assert d["format_version"] == FORMAT_VERSION


def test_infinite_thresholds_are_strict_json(tmp_path):
    m = _ada_manifest()
    text = json.dumps(m.to_dict(), allow_nan=False)  # would raise on a bare Infinity
    d = json.loads(text)
    assert d["early_exit"]["thresholds"][0] == "inf" and d["early_exit"]["thresholds"][-1] == "-inf"
    assert Manifest.from_dict(d).early_exit.thresholds[0] == math.inf


def test_graph_and_input_lookup():
    m = _ada_manifest()
    assert m.graph("local").input("step").dtype == "int64"
    with pytest.raises(VideployError, match="no graph with role 'main'"):
        m.graph("main")
    with pytest.raises(VideployError, match="no input named 'video'"):
        m.graph("local").input("video")


# --- validation ---------------------------------------------------------------------------------
def _broken(mutate) -> dict:
    d = copy.deepcopy(_main_manifest().to_dict())
    mutate(d)
    return d


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(family="resnet"), "family"),
        (lambda d: d.update(model_name=3), "model_name"),
        (lambda d: d.update(config=[1]), "config"),
        (lambda d: d.update(num_classes=True), "num_classes"),
        (lambda d: d.update(num_classes=0), "num_classes"),
        (lambda d: d.update(graphs={}), "graphs"),
        (lambda d: d["graphs"][0].update(role="glance"), "graphs"),
        (lambda d: d.update(graphs=[]), "graphs"),
        (lambda d: d["graphs"][0].update(file=7), "graphs[0].file"),
        (lambda d: d["graphs"][0].update(inputs=[]), "graphs[0].inputs/outputs"),
        (lambda d: d["graphs"][0].update(gflops="many"), "graphs[0].gflops"),
        (lambda d: d["graphs"][0]["inputs"][0].update(dtype="float64"), "graphs[0].inputs[0].dtype"),
        (lambda d: d["graphs"][0]["inputs"][0].update(shape=[-1, 3]), "graphs[0].inputs[0].shape[0]"),
        (lambda d: d["graphs"][0]["inputs"][0].update(shape="batch"), "graphs[0].inputs[0].shape"),
        (lambda d: d["graphs"][0]["outputs"][0].update(name=None), "graphs[0].outputs[0].name"),
        (lambda d: d["graphs"][0].update(engines={"fp8": "x.engine"}), "graphs[0].engines.fp8"),
        (lambda d: d["graphs"][0].update(variants=[]), "graphs[0].variants"),
        (lambda d: d.update(precision="bf16"), "precision"),
        (lambda d: d.update(batch={"min": 4, "opt": 2, "max": 8}), "batch"),
        (lambda d: d.update(batch={"min": 1, "opt": 1}), "batch.max"),
        (lambda d: d["preprocessing"].update(num_frames=0), "preprocessing.num_frames"),
        (lambda d: d["preprocessing"].update(sampling="dense"), "preprocessing.sampling"),
        (lambda d: d["preprocessing"].update(crop_size=[224]), "preprocessing.crop_size"),
        (lambda d: d["preprocessing"].update(mean=[0.5, 0.5]), "preprocessing.mean"),
        (lambda d: d["preprocessing"].update(std=[0.5, 0.0, 0.5]), "preprocessing.std[1]"),
        (lambda d: d["preprocessing"].update(layout="BCTHW"), "preprocessing.layout"),
        (lambda d: d["preprocessing"].update(channel_order="YUV"), "preprocessing.channel_order"),
        (lambda d: d["preprocessing"].update(dtype="int8"), "preprocessing.dtype"),
        (lambda d: d["preprocessing"].update(gamma=2.2), "preprocessing.gamma"),
        (lambda d: d.update(weights="ckpt.pth"), "weights"),
        (lambda d: d.update(verification=True), "verification"),
        (lambda d: d.update(provenance=None), "provenance"),
        (lambda d: d.update(gflops_per_view="1"), "gflops_per_view"),
        (lambda d: d.update(opset="20"), "opset"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_every_field_is_validated(mutate, field):
    with pytest.raises(VideployError) as err:
        Manifest.from_dict(_broken(mutate))
    assert f"field '{field}'" in str(err.value)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda e: e.update(num_steps="16"), "early_exit.num_steps"),
        (lambda e: e.update(glance_indices=[0, 48]), "early_exit.glance_indices"),
        (lambda e: e.update(glance_indices=[]), "early_exit.glance_indices"),
        (lambda e: e.update(exit_gflops=[1.0, 2.0]), "early_exit.exit_gflops"),
        (lambda e: e.update(thresholds=[0.1]), "early_exit.thresholds"),
        (lambda e: e["thresholds"].__setitem__(3, "big"), "early_exit.thresholds[3]"),
        (lambda e: e.update(criterion="max_prob"), "early_exit.criterion"),
    ],
)
def test_early_exit_is_validated(mutate, field):
    d = _ada_manifest().to_dict()
    mutate(d["early_exit"])
    with pytest.raises(VideployError) as err:
        Manifest.from_dict(d)
    assert f"field '{field}'" in str(err.value)


def test_adafocus_needs_early_exit_and_its_three_graphs_in_order():
    d = _ada_manifest().to_dict()
    d["early_exit"] = None
    with pytest.raises(VideployError, match="field 'early_exit' is required"):
        Manifest.from_dict(d)
    d = _ada_manifest().to_dict()
    d["graphs"] = d["graphs"][::-1]
    with pytest.raises(VideployError, match=r"\['glance', 'policy', 'local'\] in that order"):
        Manifest.from_dict(d)


@pytest.mark.parametrize("version", [None, 0, FORMAT_VERSION + 1, "1"])
def test_wrong_format_version_is_refused_with_advice(version):
    d = _main_manifest().to_dict()
    d["format_version"] = version
    with pytest.raises(VideployError, match=r"format_version .* re-export"):
        Manifest.from_dict(d)


@pytest.mark.parametrize(
    "where, path",
    [
        ("file", "../outside.onnx"),
        ("file", "/etc/passwd"),
        ("file", "graphs/../../x.onnx"),
        ("file", "~/x.onnx"),
        ("file", "sub\\x.onnx"),
        ("file", ""),
        ("engine", "../x.engine"),
        ("labels", "/tmp/labels.txt"),
    ],
)
def test_paths_must_stay_inside_the_bundle(where, path):
    d = _main_manifest().to_dict()
    if where == "file":
        d["graphs"][0]["file"] = path
    elif where == "engine":
        d["graphs"][0]["engines"] = {"fp16": path}
    else:
        d["labels"] = path
    with pytest.raises(VideployError, match="relative path inside the bundle"):
        Manifest.from_dict(d)


def test_symlink_escape_is_refused_on_read(tmp_path):
    m = _main_manifest()
    bundle = tmp_path / "b"
    _write_files(bundle, m)
    outside = tmp_path / "secret.onnx"
    outside.write_bytes(b"x")
    (bundle / "main.onnx").unlink()
    (bundle / "main.onnx").symlink_to(outside)
    write_manifest(bundle, m)
    with pytest.raises(VideployError, match="resolves outside the bundle"):
        read_manifest(bundle)


def test_missing_graph_file_and_missing_bundle(tmp_path):
    m = _main_manifest()
    bundle = tmp_path / "b"
    _write_files(bundle, m)
    write_manifest(bundle, m)
    (bundle / "main.onnx").unlink()
    with pytest.raises(VideployError, match="missing 'main.onnx'.*re-export"):
        read_manifest(bundle)
    assert read_manifest(bundle, check_files=False) == m
    with pytest.raises(VideployError, match="does not exist"):
        read_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideployError, match="not a videploy bundle"):
        read_manifest(tmp_path / "empty")
    (bundle / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(VideployError, match="not valid JSON"):
        read_manifest(bundle)


def test_write_manifest_refuses_an_invalid_manifest(tmp_path):
    bad = _main_manifest(num_classes=0)
    with pytest.raises(VideployError, match="num_classes"):
        write_manifest(tmp_path, bad)
    assert list(tmp_path.iterdir()) == []


# --- atomic bundle directories ------------------------------------------------------------------
def test_staged_bundle_appears_only_on_success(tmp_path):
    target = tmp_path / "b"
    with staged_bundle(target) as stage:
        assert stage.parent == tmp_path and stage != target
        (stage / "main.onnx").write_bytes(b"x")
        write_manifest(stage, _main_manifest(labels=None))
        assert not target.exists()
    assert sorted(p.name for p in target.iterdir()) == ["main.onnx", MANIFEST_NAME]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


@pytest.mark.parametrize("exc", [RuntimeError("verification failed"), KeyboardInterrupt()])
def test_staged_bundle_on_exception_leaves_nothing(tmp_path, exc):
    with pytest.raises(type(exc)):
        with staged_bundle(tmp_path / "b") as stage:
            (stage / "main.onnx").write_bytes(b"half")
            raise exc
    assert list(tmp_path.iterdir()) == []


def test_staged_bundle_overwrite_rules(tmp_path):
    target = tmp_path / "b"
    target.mkdir()
    (target / MANIFEST_NAME).write_text("{}")
    (target / "old.onnx").write_bytes(b"old")
    with pytest.raises(VideployError, match="already exists.*--overwrite"):
        with staged_bundle(target):
            pass
    # a failed overwrite keeps the old bundle intact
    with pytest.raises(RuntimeError):
        with staged_bundle(target, overwrite=True) as stage:
            (stage / "new.onnx").write_bytes(b"new")
            raise RuntimeError
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST_NAME, "old.onnx"]
    with staged_bundle(target, overwrite=True) as stage:
        (stage / "new.onnx").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["new.onnx"]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    # never replace a directory that is not a bundle
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"x")
    with pytest.raises(VideployError, match="not a videploy bundle"):
        with staged_bundle(other, overwrite=True):
            pass
    assert (other / "cat.jpg").exists()


def test_updating_bundle_is_atomic(tmp_path):
    m = _main_manifest(labels=None)
    bundle = tmp_path / "b"
    _write_files(bundle, m)
    write_manifest(bundle, m)
    with pytest.raises(RuntimeError):
        with updating_bundle(bundle) as stage:
            (stage / "main.fp16.engine").write_bytes(b"e")
            raise RuntimeError
    assert not (bundle / "main.fp16.engine").exists() and read_manifest(bundle) == m
    with updating_bundle(bundle) as stage:
        (stage / "main.fp16.engine").write_bytes(b"e")
        g = m.graphs[0]
        write_manifest(stage, m.with_updates(graphs=(GraphSpec(**{**g.__dict__, "engines": {"fp16": "main.fp16.engine"}}),)))
    assert read_manifest(bundle).graphs[0].engines == {"fp16": "main.fp16.engine"}
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


@pytest.mark.parametrize("criterion", ["entropy", "confidence"])
def test_exit_criterion_round_trips(criterion):
    d = _ada_manifest().to_dict()
    d["early_exit"]["criterion"] = criterion
    m = Manifest.from_dict(d)
    assert m.early_exit.criterion == criterion
    assert Manifest.from_dict(m.to_dict()).early_exit.criterion == criterion


def test_exit_criterion_defaults_to_entropy_for_older_manifests():
    d = _ada_manifest().to_dict()
    del d["early_exit"]["criterion"]
    assert Manifest.from_dict(d).early_exit.criterion == "entropy"
    d["early_exit"]["criterion"] = "Entropy"
    with pytest.raises(VideployError, match="'entropy', 'confidence'"):
        Manifest.from_dict(d)
