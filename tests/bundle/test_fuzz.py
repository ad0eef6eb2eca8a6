"""Fuzz: mutate a tiny bundle's manifest fields and graph I/O; every outcome is a sane prediction or one error line.

Every leaf of the static and AdaFocusV3 toy manifests is removed and gets a wrong type and a bad
number, plus a sampled fourth value (all from: wrong types, NaN / infinities, negatives, zero, huge
values 10^9 and a 10^400 literal, 200-deep nesting); the graph files
get renamed / retyped / resized inputs and outputs, other toys' graphs, truncation and garbage.
Each mutated bundle goes through ``videploy inspect --json`` and, when accepted, ``inspect`` and
``predict --json``, all in ONE subprocess whose address space is capped at its warm-up peak plus
:data:`BOUND` (so an allocation from an unchecked size fails the case instead of the machine). The
asserts: no traceback, no case slower than :data:`CASE_SECONDS`, exit 0 with strict JSON and a
prediction that fits the manifest, or exit 2 with exactly one ``videploy ...: error:`` line.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.runtime.toys import ToyAdaFocus, ToyStatic, adaptive_bundle, static_bundle
from videploy.bundle.manifest import MANIFEST_NAME
from videploy.runtime.samples import sample_video_path

REPO = Path(__file__).resolve().parents[2]
BOUND = 1 << 30  # bytes of address space a case may add to the warm-up peak
CASE_SECONDS = 20.0  # generous on a shared 2-core machine; a hang is minutes
MISSING = object()
HUGE, DEEP = "__HUGE__", "__DEEP__"
VALUES: list[Any] = ["x", None, True, [], {}, math.nan, math.inf, -math.inf, -1, 0, 2.5, 10**9, HUGE, DEEP, MISSING]
FREE_FORM = ("config", "provenance", "verification", "weights")  # replaced whole, not walked
VALUES_PER_FIELD = 4  # of VALUES per manifest field (~1000 cases, ~10 ms each)
MAX_PREDICTS = 40  # accepted mutations run through predict (deterministic sample beyond this)


def _strict_loads(text: str) -> Any:
    def bad(token: str) -> Any:
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=bad)


def _paths(d: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every leaf and container path of the manifest (free-form objects only at their top)."""
    if prefix:
        yield prefix
    if prefix and prefix[0] in FREE_FORM:
        return
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, (*prefix, i))


def _set(d: Any, path: tuple, value: Any) -> None:
    for k in path[:-1]:
        d = d[k]
    if value is MISSING:
        if isinstance(d, dict):
            del d[path[-1]]
        else:
            del d[path[-1]]
    else:
        d[path[-1]] = value


def _dump(d: dict) -> str:
    text = json.dumps(d)  # NaN / Infinity tokens on purpose: hostile files have them
    return text.replace(f'"{HUGE}"', "1" + "0" * 400).replace(f'"{DEEP}"', "[" * 200 + "]" * 200)


def _graph_mutations(onnx_path: Path, out: Path, others: dict[str, Path]) -> Iterator[tuple[str, Path]]:
    """(name, directory) bundles whose graph file was altered (the manifest left as it was)."""
    import onnx

    base = onnx.load(str(onnx_path))

    def variant(name: str, edit) -> tuple[str, Path]:
        d = out / f"graph-{onnx_path.stem}-{name}"
        shutil.copytree(onnx_path.parent, d)
        proto = onnx.ModelProto()
        proto.CopyFrom(base)
        data = edit(proto)
        if isinstance(data, bytes):
            (d / onnx_path.name).write_bytes(data)
        else:
            onnx.save(proto, str(d / onnx_path.name))
        return name, d

    def rename_input(p):
        p.graph.input[0].name = "renamed"

    def retype_input(p):
        p.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16

    def static_dim(p):
        p.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 99

    def fixed_batch(p):
        p.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 3

    def drop_rank(p):
        del p.graph.input[0].type.tensor_type.shape.dim[-1]

    def extra_input(p):
        p.graph.input.append(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, [1]))

    def retype_output(p):
        p.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.INT64

    def classes_output(p):
        p.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = 1000

    def no_shape(p):
        p.graph.output[0].type.tensor_type.ClearField("shape")

    def not_tensor(p):
        p.graph.input[0].type.ClearField("tensor_type")
        p.graph.input[0].type.sequence_type.elem_type.tensor_type.elem_type = 1

    for name, edit in [
        ("rename-input", rename_input), ("retype-input", retype_input), ("static-dim", static_dim), ("fixed-batch", fixed_batch),
        ("drop-rank", drop_rank), ("extra-input", extra_input), ("retype-output", retype_output), ("classes-output", classes_output),
        ("no-shape", no_shape), ("not-tensor", not_tensor),
        ("truncated", lambda p: p.SerializeToString()[: len(p.SerializeToString()) // 3]),
        ("garbage", lambda p: bytes(random.Random(0).randrange(256) for _ in range(5000))),
        ("empty", lambda p: b""),
    ]:
        yield variant(name, edit)
    for other_name, other in others.items():
        d = out / f"graph-{onnx_path.stem}-from-{other_name}"
        shutil.copytree(onnx_path.parent, d)
        shutil.copy(other, d / onnx_path.name)
        yield f"from-{other_name}", d


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> tuple[list[dict], dict[str, dict]]:
    root = tmp_path_factory.mktemp("fuzz")
    video = str(sample_video_path())
    static = static_bundle(root / "static", ToyStatic().eval(), labels=[f"label {i}" for i in range(7)])
    static8 = static_bundle(root / "static8", ToyStatic(num_frames=8, num_classes=20).eval())
    ada = adaptive_bundle(root / "ada", ToyAdaFocus().eval(), thresholds=[0.5, 0.5, 0.5, -math.inf])
    bases = {"static": static, "ada": ada}
    out: list[dict] = []
    manifests: dict[str, dict] = {}

    def add(case_id: str, bundle: Path) -> None:
        manifests[case_id] = json.loads((bundle / MANIFEST_NAME).read_text(), parse_constant=float) if (bundle / MANIFEST_NAME).is_file() else {}
        out.append({"id": case_id, "bundle": str(bundle), "video": video})

    add("static-original", static)  # first: the runner's warm-up
    add("ada-original", ada)
    for kind, base in bases.items():
        original = json.loads((base / MANIFEST_NAME).read_text())
        rng = random.Random(kind)
        for path in _paths(original):
            # every field meets a missing key, a wrong type and a bad number; the rest of VALUES is sampled
            picks = {VALUES.index(MISSING), rng.choice([0, 1, 2, 3, 4, 13]), rng.choice([5, 6, 7, 8, 9, 10, 11, 12])}
            picks |= set(rng.sample(range(len(VALUES)), VALUES_PER_FIELD - len(picks)))
            for vi in sorted(picks):
                value = VALUES[vi]
                d = json.loads(json.dumps(original))
                _set(d, path, value)
                case_dir = root / f"{kind}-{'.'.join(map(str, path))}-{vi}"
                case_dir.mkdir()
                for f in base.iterdir():
                    if f.name != MANIFEST_NAME:
                        os.link(f, case_dir / f.name)  # graphs shared: only the manifest differs
                (case_dir / MANIFEST_NAME).write_text(_dump(d))
                add(case_dir.name, case_dir)
    for name, d in _graph_mutations(static / "main.onnx", root, {"static8": static8 / "main.onnx", "ada-glance": ada / "glance.onnx"}):
        add(f"static-{name}", d)
    for name, d in _graph_mutations(ada / "local.onnx", root, {"ada-glance": ada / "glance.onnx"}):
        add(f"ada-local-{name}", d)
    for name, d in _graph_mutations(ada / "policy.onnx", root, {}):
        add(f"ada-policy-{name}", d)
    return out, manifests


def _run(cases: list[dict], tmp_path: Path, argv_of) -> list[dict]:
    spec = [{"id": c["id"], "argv": argv_of(c)} for c in cases]
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec_path, results_path = tmp_path / "cases.json", tmp_path / "results.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.bundle.fuzz_runner", str(spec_path), str(results_path), str(BOUND)],
        env=env, capture_output=True, text=True, timeout=900, cwd=REPO,
    )
    done = json.loads(results_path.read_text())["cases"] if results_path.is_file() else []
    assert proc.returncode == 0, f"runner died after {len(done)} cases (next: {spec[len(done)]['id'] if len(done) < len(spec) else '-'}): {proc.stderr[-3000:]}"
    return done


def _check_error(case_id: str, o: dict) -> None:
    lines = o["stderr"].strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("videploy ") and ": error: " in lines[0], f"{case_id}: {o['argv'][:2]} -> {o['stderr'][-1500:]}"


def test_fuzz_manifest_and_graphs(cases, tmp_path):
    all_cases, manifests = cases
    first = _run(all_cases, tmp_path / "a", lambda c: [["inspect", c["bundle"], "--json"]])
    assert len(first) == len(all_cases)
    accepted = []
    for c, r in zip(all_cases, first):
        (o,) = r["outcomes"]
        assert o["traceback"] is None, f"{c['id']}: traceback\n{o['traceback']}"
        assert o["seconds"] < CASE_SECONDS, f"{c['id']}: {o['seconds']:.1f} s"
        if o["code"] == 0:
            doc = _strict_loads(o["stdout"])
            assert doc["model_name"] and doc["num_classes"] >= 1
            accepted.append(c)
        else:
            assert o["code"] == 2, f"{c['id']}: exit {o['code']}"
            _check_error(c["id"], o)
    assert 0 < len(accepted) < len(all_cases)  # the fuzz really exercises both sides
    sample = accepted[:2] + sorted(random.Random(0).sample(accepted[2:], min(MAX_PREDICTS, len(accepted) - 2)), key=all_cases.index)
    second = _run(sample, tmp_path / "b", lambda c: [["inspect", c["bundle"]], ["predict", c["bundle"], c["video"], "--json", "--threads", "1", "--top-k", "3"]])
    for c, r in zip(sample, second):
        for o in r["outcomes"]:
            assert o["traceback"] is None, f"{c['id']}: traceback in {o['argv'][0]}\n{o['traceback']}"
            assert o["seconds"] < CASE_SECONDS, f"{c['id']}: {o['argv'][0]} took {o['seconds']:.1f} s"
            if o["code"] != 0:
                assert o["code"] == 2, f"{c['id']}: exit {o['code']}"
                if o["argv"][0] == "predict" and o["stdout"].strip():  # per-video errors come with the JSON document
                    doc = _strict_loads(o["stdout"])
                    assert doc["errors"] and not doc["results"]
                    continue
                _check_error(c["id"], o)
                continue
            if o["argv"][0] != "predict":
                continue
            doc = _strict_loads(o["stdout"])
            num_classes = manifests[c["id"]]["num_classes"]
            (res,) = doc["results"]
            assert res["top"] and all(0 <= t["index"] < num_classes for t in res["top"])
            assert all(isinstance(t["probability"], float) and 0.0 <= t["probability"] <= 1.0 for t in res["top"])
            assert isinstance(res["gflops"], float) and math.isfinite(res["gflops"])
