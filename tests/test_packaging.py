"""Installation: the onnxruntime flavour is an extra, and a missing runtime names the extra.

``onnxruntime`` and ``onnxruntime-gpu`` install the same ``onnxruntime`` module. If the base
install required one, ``pip install videploy onnxruntime-gpu`` would leave both, the CPU build
shadowing the GPU one; so neither is a base requirement and ``[cpu]`` / ``[gpu]`` choose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
ORT = {"onnxruntime", "onnxruntime-gpu"}


def _names(reqs: list[str]) -> set[str]:
    return {Requirement(r).name.lower().replace("_", "-") for r in reqs}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_base_install_has_no_onnxruntime_and_extras_pick_the_flavour():
    project = _project()
    base = _names(project["dependencies"])
    assert not {n for n in base if n.startswith("onnxruntime")}, base
    extras = {k: _names(v) for k, v in project["optional-dependencies"].items()}
    assert extras["cpu"] & ORT == {"onnxruntime"}
    assert extras["gpu"] & ORT == {"onnxruntime-gpu"}
    # no other extra drags in a flavour behind the user's back
    for name, deps in extras.items():
        if name not in ("cpu", "gpu"):
            assert not deps & ORT, name
    # the native TensorRT backend: TensorRT's Python package and the CUDA runtime bindings, per CUDA major
    assert extras["tensorrt"] == {"tensorrt-cu13", "cuda-python"}
    assert extras["tensorrt-cu12"] == {"tensorrt-cu12", "cuda-python"}
    cu12 = {Requirement(r).name: Requirement(r).specifier for r in project["optional-dependencies"]["tensorrt-cu12"]}
    assert "13.0" not in cu12["cuda-python"] and "12.6" in cu12["cuda-python"]


def test_readme_fresh_machine_commands_pick_the_cpu_extra():
    lines = [ln for ln in (REPO / "README.md").read_text(encoding="utf-8").splitlines() if "python3 -m venv .venv" in ln]
    assert len(lines) == 2
    assert all('-e ".[torch,cpu' in ln for ln in lines), lines


MISSING_ORT = """
import sys
sys.modules["onnxruntime"] = None  # as if neither onnxruntime nor onnxruntime-gpu were installed
from videploy.errors import VideployError
import videploy.runtime as rt
try:
    rt.load(sys.argv[1]).predict(sys.argv[2])
except VideployError as exc:
    print(exc)
    sys.exit(3)
"""


def test_missing_onnxruntime_names_the_extras(tmp_path):
    from tests.runtime.toys import ToyStatic, static_bundle
    from videploy.runtime.samples import sample_video_path

    bundle = static_bundle(tmp_path / "b", ToyStatic())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", MISSING_ORT, str(bundle), str(sample_video_path())], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "videploy[cpu]" in proc.stdout and "videploy[gpu]" in proc.stdout, proc.stdout


def test_export_without_onnxruntime_fails_first_and_names_the_extras(tmp_path):
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from videploy.errors import VideployError\n"
        "from videploy.export import export_bundle\n"
        "try:\n"
        "    export_bundle('stam_8', sys.argv[1])\n"
        "except VideployError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "videploy[cpu]" in proc.stdout and "videploy[gpu]" in proc.stdout, proc.stdout
    assert not (tmp_path / "out").exists()


def _resolve(extra: str, tmp_path: Path) -> set[str]:
    report = tmp_path / f"{extra}.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), f"{REPO}[{extra}]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "wanted", "unwanted"), [("gpu", "onnxruntime-gpu", "onnxruntime"), ("cpu", "onnxruntime", "onnxruntime-gpu")])
def test_pip_resolves_one_flavour(extra, wanted, unwanted, tmp_path):
    """What pip would install (needs the package index; about a minute)."""
    names = _resolve(extra, tmp_path)
    assert wanted in names and unwanted not in names, sorted(names)
