"""The graphs are held to the manifest when a bundle is opened (one clear error naming both sides).

Before this check, each case failed later inside onnxruntime with a traceback, or answered with
class indices the manifest does not have.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.runtime.toys import TF, ToyAdaFocus, ToyStatic, adaptive_bundle, static_bundle
from videploy import runtime
from videploy.bundle.graph_check import _step_table_sizes, check_graphs, read_graph_header
from videploy.bundle.manifest import MANIFEST_NAME, read_manifest
from videploy.errors import VideployError


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("graphs")
    return {
        "static": static_bundle(d / "static", ToyStatic().eval()),
        "static8": static_bundle(d / "static8", ToyStatic(num_frames=8).eval()),
        "static20": static_bundle(d / "static20", ToyStatic(num_classes=20).eval()),
        "ada": adaptive_bundle(d / "ada", ToyAdaFocus().eval()),
    }


def edited(bundles: dict[str, Path], name: str, tmp_path: Path, mutate: Callable[[dict], None]) -> Path:
    out = tmp_path / name
    shutil.copytree(bundles[name], out)
    d = json.loads((out / MANIFEST_NAME).read_text())
    mutate(d)
    (out / MANIFEST_NAME).write_text(json.dumps(d))
    return out


def refused(bundle: Path, *needles: str) -> str:
    with pytest.raises(VideployError) as err:
        read_manifest(bundle, check_graphs=True)
    msg = str(err.value)
    for n in needles:
        assert n in msg, msg
    # the public entry point refuses it the same way, before any backend call
    with pytest.raises(VideployError):
        runtime.load(bundle, threads=1)
    return msg


def test_good_bundles_pass(bundles):
    for b in bundles.values():
        m = read_manifest(b)
        check_graphs(b, m)


def test_graph_takes_8_frames_manifest_says_4(bundles, tmp_path):
    def mutate(d):
        d["preprocessing"]["num_frames"] = 4
        d["graphs"][0]["inputs"][0]["shape"][1] = 4

    refused(edited(bundles, "static8", tmp_path, mutate), "'video'", "axis 1 is 8 in the graph, 4 in the manifest")


def test_float16_declared_graph_takes_float32(bundles, tmp_path):
    def mutate(d):
        d["graphs"][0]["inputs"][0]["dtype"] = "float16"

    refused(edited(bundles, "static", tmp_path, mutate), "dtype float32", "manifest says float16")


def test_consistent_but_wrong_crop(bundles, tmp_path):
    def mutate(d):
        d["preprocessing"]["crop_size"] = [24, 24]
        d["preprocessing"]["resize_short"] = 27
        d["graphs"][0]["inputs"][0]["shape"][3:] = [24, 24]

    refused(edited(bundles, "static", tmp_path, mutate), "axis 3 is 16 in the graph, 24 in the manifest")


def test_consistent_but_wrong_crop_with_symbolic_spec(bundles, tmp_path):
    def mutate(d):  # the spec does not say; preprocessing does
        d["preprocessing"]["crop_size"] = [24, 24]
        d["graphs"][0]["inputs"][0]["shape"][3:] = ["h", "w"]

    refused(edited(bundles, "static", tmp_path, mutate), "axis 3 is 16 in the graph", "preprocessing.crop_size[0] is 24")


def test_20_class_graph_under_a_10_class_manifest(bundles, tmp_path):
    def mutate(d):
        d["num_classes"] = 10
        d["graphs"][0]["outputs"][0]["shape"][1] = 10

    bundle = edited(bundles, "static20", tmp_path, mutate)
    refused(bundle, "'logits'", "axis 1 is 20 in the graph, 10 in the manifest")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    with pytest.raises(VideployError):
        runtime.load(bundle, labels=labels, threads=1)


@pytest.mark.parametrize("steps", [2, 4])
def test_adafocus_num_steps_against_a_3_step_graph(bundles, tmp_path, steps):
    def mutate(d):
        ee = d["early_exit"]
        ee["num_steps"] = steps
        ee["exit_gflops"] = [0.5 + 0.75 * t for t in range(steps + 1)]
        for g in d["graphs"]:
            if g["role"] == "policy":
                for t in g["outputs"]:
                    t["shape"][1] = steps

    refused(edited(bundles, "ada", tmp_path, mutate), "early_exit.num_steps")


def test_step_tables_are_found_in_the_local_graph(bundles):
    sizes = _step_table_sizes(read_graph_header(bundles["ada"] / "local.onnx"))
    assert sizes and all(rows == TF for _, rows in sizes)


def test_adafocus_step_table_alone_catches_num_steps(bundles, tmp_path):
    # policy outputs made symbolic in the graph spec AND the graph: only the local graph's heads tell
    import onnx

    def mutate(d):
        ee = d["early_exit"]
        ee["num_steps"] = 2
        ee["exit_gflops"] = ee["exit_gflops"][:3]
        for g in d["graphs"]:
            if g["role"] == "policy":
                for t in g["outputs"]:
                    t["shape"][1] = "steps"

    bundle = edited(bundles, "ada", tmp_path, mutate)
    proto = onnx.load(str(bundle / "policy.onnx"))
    for o in proto.graph.output:
        o.type.tensor_type.shape.dim[1].dim_param = "steps"
    onnx.save(proto, str(bundle / "policy.onnx"))
    refused(bundle, "graph 'local'", "with 3 rows", "num_steps is 2")


def test_missing_extra_and_renamed_tensors(bundles, tmp_path):
    def rename_in(d):
        d["graphs"][0]["inputs"][0]["name"] = "clip"

    refused(edited(bundles, "static", tmp_path / "a", rename_in), "no input 'clip'", "['video']")

    def rename_out(d):
        d["graphs"][0]["outputs"][0]["name"] = "scores"

    refused(edited(bundles, "static", tmp_path / "b", rename_out), "no output 'scores'")

    def drop_input(d):
        d["graphs"][2]["inputs"] = [t for t in d["graphs"][2]["inputs"] if t["name"] != "action"]

    refused(edited(bundles, "ada", tmp_path / "c", drop_input), "['action']", "could not feed")


def test_rank_and_fixed_batch(bundles, tmp_path):
    def rank(d):
        d["graphs"][0]["outputs"][0]["shape"] = ["batch", 7, 1]

    refused(edited(bundles, "static", tmp_path / "a", rank), "rank 2", "rank 3")


@pytest.mark.parametrize(
    "content",
    [b"", b"not an onnx file at all", b"\x00" * 4096, b"\x3a\xff\xff\xff\xff\x0f", b"\xff" * 64],
    ids=["empty", "text", "zeros", "huge-length", "ff"],
)
def test_garbage_graph_files(bundles, tmp_path, content):
    bundle = tmp_path / "b"
    shutil.copytree(bundles["static"], bundle)
    (bundle / "main.onnx").write_bytes(content)
    refused(bundle, "main.onnx")


def test_truncated_graph_file(bundles, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(bundles["ada"], bundle)
    data = (bundle / "local.onnx").read_bytes()
    (bundle / "local.onnx").write_bytes(data[: len(data) // 2])
    refused(bundle, "local.onnx", "not a valid ONNX model")


def test_header_read_skips_weights(bundles):
    import onnx

    header = read_graph_header(bundles["ada"] / "local.onnx")
    full = onnx.load(str(bundles["ada"] / "local.onnx")).graph
    assert [t.name for t in header.initializer] == [t.name for t in full.initializer]
    assert [list(t.dims) for t in header.initializer] == [list(t.dims) for t in full.initializer]
    assert all(not t.raw_data and not t.float_data for t in header.initializer)
    assert [n.name for n in header.input] == [n.name for n in full.input]


def test_precision_variants_are_checked_too(bundles, tmp_path):
    def mutate(d):
        d["graphs"][0]["variants"] = {"fp16": "main.fp16.onnx"}

    bundle = edited(bundles, "static", tmp_path, mutate)
    shutil.copy(bundles["static"] / "main.onnx", bundle / "main.fp16.onnx")
    check_graphs(bundle, read_manifest(bundle))
    shutil.copy(bundles["static8"] / "main.onnx", bundle / "main.fp16.onnx")  # 8 frames under a 4-frame manifest
    refused(bundle, "main.fp16.onnx", "axis 1 is 8 in the graph, 4 in the manifest")
