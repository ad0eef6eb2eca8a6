"""Fixtures for runtime tests: toy bundles (built once per session) and a backend factory."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.runtime import fake_tensorrt
from tests.runtime.toys import ToyAdaFocus, ToyStatic, adaptive_bundle, static_bundle

# Every backend the contract test runs against. "tensorrt" is the real library (skipped where it is
# not installed or there is no GPU); "tensorrt-simulated" runs the same backend code on the fakes.
BACKEND_NAMES = ["onnxruntime", "torch", "openvino", "tensorrt", "tensorrt-simulated"]


def _real_tensorrt_available() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'videploy[tensorrt]' on a machine with an NVIDIA GPU)"
    for mod in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            if importlib.util.find_spec(mod) is not None:
                break
        except ModuleNotFoundError:
            continue
    else:
        return "cuda-python is not installed (pip install 'videploy[tensorrt]')"
    return None


@pytest.fixture(scope="session")
def toy_static() -> ToyStatic:
    return ToyStatic().eval()


@pytest.fixture(scope="session")
def toy_adafocus() -> ToyAdaFocus:
    return ToyAdaFocus().eval()


@pytest.fixture(scope="session")
def static_dir(tmp_path_factory, toy_static) -> Path:
    d = static_bundle(tmp_path_factory.mktemp("bundles") / "static", toy_static)
    fake_tensorrt.add_engines(d)
    return d


@pytest.fixture(scope="session")
def adaptive_dir(tmp_path_factory, toy_adafocus) -> Path:
    d = adaptive_bundle(tmp_path_factory.mktemp("bundles") / "adaptive", toy_adafocus)
    fake_tensorrt.add_engines(d)
    return d


@pytest.fixture
def make_backend(monkeypatch) -> Callable:
    """``make_backend(name, bundle_dir, model)`` -> a Backend of that kind on the bundle."""
    made = []

    def make(name: str, bundle: Path, model=None, **kw):
        if name == "onnxruntime":
            from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

            b = OnnxRuntimeBackend(bundle, threads=1, **kw)
        elif name == "torch":
            from videploy.export.torch_backend import TorchBackend

            b = TorchBackend(bundle, model=model, **kw)
        elif name == "openvino":
            if importlib.util.find_spec("openvino") is None:
                pytest.skip("OpenVINO is not installed (pip install 'videploy[openvino]')")
            from videploy.runtime.backends.openvino import OpenVinoBackend

            b = OpenVinoBackend(bundle, threads=1, **kw)
        elif name == "tensorrt":
            reason = _real_tensorrt_available()
            if reason:
                pytest.skip(reason)
            from videploy.runtime.backends.tensorrt import TensorRTBackend

            b = TensorRTBackend(bundle, device="cuda", **kw)
        elif name == "tensorrt-simulated":
            fake_tensorrt.install(monkeypatch)
            from videploy.runtime.backends.tensorrt import TensorRTBackend

            b = TensorRTBackend(bundle, device="cuda", **kw)
        else:  # pragma: no cover
            raise ValueError(name)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
