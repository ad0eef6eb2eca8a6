"""Hostile manifests: every bad field is one VideployError naming it, before anything is allocated.

Each case here used to end in a traceback (ValueError, TypeError, RecursionError, OverflowError),
a silently wrong answer (NaN statistics), or an allocation of gigabytes. Manifests are written as
JSON text (NaN / Infinity tokens included) and read back with ``read_manifest``, as a device would.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.bundle.test_manifest import _ada_manifest, _main_manifest
from videploy.bundle import manifest as mf
from videploy.bundle.manifest import MANIFEST_NAME, read_manifest
from videploy.errors import VideployError


def _write(tmp_path: Path, d: dict | str) -> Path:
    bundle = tmp_path / "b"
    bundle.mkdir(exist_ok=True)
    text = d if isinstance(d, str) else json.dumps(d)  # allow_nan: hostile files do contain NaN / Infinity
    (bundle / MANIFEST_NAME).write_text(text)
    return bundle


def _refused(tmp_path: Path, d: dict | str, field: str) -> str:
    bundle = _write(tmp_path, d)
    with pytest.raises(VideployError) as err:
        read_manifest(bundle, check_files=False)
    msg = str(err.value)
    assert field in msg, msg
    assert "\n" not in msg and len(msg) < 600  # one readable line, never a 10^400-digit echo
    return msg


def _main(**pre) -> dict:
    d = _main_manifest().to_dict()
    d["preprocessing"].update(pre)
    return d


def _ada(**ee) -> dict:
    d = _ada_manifest().to_dict()
    d["early_exit"].update(ee)
    return d


# --- item 1: tracebacks from the parser ---------------------------------------------------------
@pytest.mark.parametrize(
    "d, field",
    [
        (_ada(exit_gflops=["abc"] + [1.0] * 16), "early_exit.exit_gflops[0]"),
        (_ada(exit_gflops=[None] * 17), "early_exit.exit_gflops[0]"),
        (_ada(state_size="4096"), "early_exit.state_size"),
        (_ada(state_size=4096.5), "early_exit.state_size"),
        (_ada(num_steps=-1), "early_exit.num_steps"),
        (_ada(num_steps=10**6), "early_exit.num_steps"),
        (_ada(patch_size=0), "early_exit.patch_size"),
        (_ada(thresholds=[math.nan] * 17), "early_exit.thresholds[0]"),
        (_ada(exit_gflops=[5.0, 1.0] + [6.0] * 15), "early_exit.exit_gflops[1]"),
    ],
)
def test_early_exit_fields_are_total(tmp_path, d, field):
    _refused(tmp_path, d, field)


def test_nul_byte_in_a_graph_path(tmp_path):
    d = _main_manifest().to_dict()
    d["graphs"][0]["file"] = "main\x00.onnx"
    _refused(tmp_path, d, "graphs[0].file")
    d["graphs"][0]["file"] = "a/" + "x" * 300 + ".onnx"  # ENAMETOOLONG on is_file()
    _refused(tmp_path, d, "graphs[0].file")


def test_deep_nesting_is_refused_before_parsing(tmp_path):
    d = _main_manifest().to_dict()
    text = json.dumps(d)
    deep = "[" * 5000 + "]" * 5000
    msg = _refused(tmp_path, text.replace('"config": {', f'"config": {{"x": {deep}, ', 1), "nests")
    assert str(mf.MAX_JSON_DEPTH) in msg
    # brackets inside strings do not count
    ok = text.replace('"config": {', '"config": {"x": "' + "[" * 5000 + '", ', 1)
    (tmp_path / "b" / MANIFEST_NAME).write_text(ok)
    assert read_manifest(tmp_path / "b", check_files=False).config["x"] == "[" * 5000


def test_inspect_json_of_a_deep_manifest_is_one_error_line(tmp_path, capsys):
    from videploy.cli import main

    text = json.dumps(_main_manifest().to_dict()).replace('"config": {', '"config": {"x": ' + "[" * 900 + "]" * 900 + ", ", 1)
    bundle = _write(tmp_path, text)
    assert main(["inspect", str(bundle), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nests" in err


@pytest.mark.parametrize("digits", [400, 5000])
def test_astronomical_integers(tmp_path, digits):
    text = json.dumps(_main(num_frames=7)).replace('"num_frames": 7', '"num_frames": 1' + "0" * digits)
    msg = _refused(tmp_path, text, "num_frames" if digits < 4300 else "not valid JSON")
    assert "0" * 100 not in msg


def test_oversized_manifest(tmp_path):
    d = _main_manifest().to_dict()
    d["config"] = {"pad": "x" * (mf.MAX_MANIFEST_BYTES + 1)}
    _refused(tmp_path, d, "larger than the limit")


# --- item 3: NaN / infinities / negative values are refused, not used ------------------------------
@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["preprocessing"].update(mean=[math.nan, 0.4, 0.4]), "preprocessing.mean[0]"),
        (lambda d: d["preprocessing"].update(std=[0.2, math.inf, 0.2]), "preprocessing.std[1]"),
        (lambda d: d["preprocessing"].update(std=[0.2, 0.2, math.nan]), "preprocessing.std[2]"),
        (lambda d: d["preprocessing"].update(scale=math.nan), "preprocessing.scale"),
        (lambda d: d["preprocessing"].update(scale=-1 / 255), "preprocessing.scale"),
        (lambda d: d["preprocessing"].update(scale=0), "preprocessing.scale"),
        (lambda d: d["preprocessing"].update(resize_short=-256), "preprocessing.resize_short"),
        (lambda d: d["preprocessing"].update(frame_interval=0), "preprocessing.frame_interval"),
        (lambda d: d["preprocessing"].update(frame_interval=-4), "preprocessing.frame_interval"),
        (lambda d: d["preprocessing"].update(frame_interval=10**15), "preprocessing.frame_interval"),
        (lambda d: d["graphs"][0].update(gflops=math.inf), "graphs[0].gflops"),
        (lambda d: d["graphs"][0].update(gflops=math.nan), "graphs[0].gflops"),
        (lambda d: d["graphs"][0].update(gflops=-1.0), "graphs[0].gflops"),
        (lambda d: d.update(gflops_per_view=math.inf), "gflops_per_view"),
        (lambda d: d.update(gflops_per_view=1e400), "gflops_per_view"),  # json.dumps writes Infinity
        (lambda d: d["preprocessing"].update(num_crops=2), "preprocessing.num_crops"),
    ],
)
def test_non_finite_and_negative_values(tmp_path, mutate, field):
    d = _main_manifest().to_dict()
    mutate(d)
    _refused(tmp_path, d, f"field '{field}'")


@pytest.mark.parametrize("i", [0, 5, 16])
def test_non_finite_exit_costs(tmp_path, i):
    d = _ada_manifest().to_dict()
    for bad in (math.inf, math.nan):
        d["early_exit"]["exit_gflops"][i] = bad
        _refused(tmp_path, d, f"early_exit.exit_gflops[{i}]")


# --- item 4: sizes that would allocate gigabytes ---------------------------------------------------
@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["preprocessing"].update(num_frames=10**9), "preprocessing.num_frames"),
        (lambda d: d["preprocessing"].update(num_frames=10**5), "preprocessing.num_frames"),
        (lambda d: d["preprocessing"].update(num_frames=10**6), "preprocessing.num_frames"),
        (lambda d: d["preprocessing"].update(crop_size=[4000, 4000]), "preprocessing.crop_size[0]"),
        (lambda d: d["preprocessing"].update(crop_size=[2048, 2048], num_frames=8), "preprocessing.num_frames/crop_size"),
        (lambda d: d["preprocessing"].update(resize_short=2048, num_frames=256, crop_size=[16, 16]), "preprocessing.num_frames/num_clips/resize_short"),
        (lambda d: d["preprocessing"].update(num_clips=10**6), "preprocessing.num_clips"),
        (lambda d: d.update(batch={"min": 10**6, "opt": 10**6, "max": 10**6}), "batch.min"),
        (lambda d: d.update(batch={"min": 512, "opt": 512, "max": 512}), "batch.min"),  # 512 x 8 x 3 x 224^2 > limit
        (lambda d: d.update(num_classes=10**9), "num_classes"),
    ],
)
def test_huge_sizes_are_refused(tmp_path, mutate, field):
    d = _main_manifest().to_dict()
    mutate(d)
    _refused(tmp_path, d, f"field '{field}'")


def test_specs_must_agree_with_preprocessing_and_classes(tmp_path):
    d = _main_manifest().to_dict()
    d["preprocessing"]["num_frames"] = 4  # the video spec says 8
    _refused(tmp_path, d, "graphs[0].inputs[0].shape[1]")
    d = _main_manifest().to_dict()
    d["num_classes"] = 10  # the logits spec says 400
    msg = _refused(tmp_path, d, "graphs[0].outputs[0].shape[1]")
    assert "num_classes" in msg
    d = _ada_manifest().to_dict()
    d["early_exit"]["num_steps"] = 2
    d["early_exit"]["exit_gflops"] = d["early_exit"]["exit_gflops"][:3]
    d["early_exit"]["thresholds"] = None
    _refused(tmp_path, d, "early_exit.num_steps")


def test_limits_are_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    for name in ("MAX_FRAMES", "MAX_SIDE", "MAX_VIEW_VALUES", "MAX_CLASSES", "MAX_BATCH", "MAX_STEPS", "MAX_JSON_DEPTH", "MAX_MANIFEST_BYTES"):
        assert name in doc and hasattr(mf, name)


def test_inspect_shows_non_finite_verification_numbers(tmp_path, capsys, monkeypatch):
    """A failed verification records "inf" / "nan" (strict JSON); the summary shows them instead of crashing."""
    import videploy.bundle.manifest as manifest_module
    from videploy.cli import main

    d = _main_manifest().to_dict()
    d["verification"] = {
        "passed": False,
        "outputs": [
            {"graph": "main", "output": "logits", "call": "batch 1", "max_abs": "inf", "max_rel": "nan", "cosine": 0.0, "top1": None, "passed": False},
            {"graph": "main", "output": "logits", "call": "batch 2", "max_abs": 1e-6, "max_rel": 1e-5, "cosine": 1.0, "top1": 1.0, "passed": True},
            {"graph": "main", "output": "ids", "call": "batch 1", "exact": True},
        ],
    }
    bundle = _write(tmp_path, d)
    for rel in ("main.onnx", "labels.txt"):
        (bundle / rel).write_bytes(b"x")  # placeholders: skip the graph check, this is about the summary
    real = manifest_module.read_manifest
    monkeypatch.setattr(manifest_module, "read_manifest", lambda root, check_graphs=False, **kw: real(root, **kw))
    assert main(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "inf" in out and "FAILED" in out
    d["verification"]["outputs"][0]["max_abs"] = "big"
    _refused(tmp_path, d, "verification.outputs[0].max_abs")


def test_huge_label_file_is_not_read_whole(tmp_path):
    from videploy.runtime.labels import read_labels

    labels = tmp_path / "labels.txt"
    with open(labels, "wb") as f:  # sparse: 8 GiB of apparent size, no disk
        f.truncate(8 << 30)
    with pytest.raises(VideployError, match="larger than"):
        read_labels(labels, 10)
    labels.write_text("\n".join(f"class {i}" for i in range(10)))
    assert read_labels(labels, 10)[9] == "class 9"
