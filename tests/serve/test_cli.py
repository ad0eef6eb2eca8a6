"""``videploy serve``'s command line, and its errors where the serving extra is missing or mismatched.

These run without a server (and without the ``serve`` extra)."""

from __future__ import annotations

import sys

import pytest

from tests.runtime.toys import ToyStatic, static_bundle
from videploy.cli import main
from videploy.errors import VideployError


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--http-port", "--grpc-port", "--metrics-port", "--max-upload-mb", "dynamic batching", "continuous batching", "SIGTERM", "BYTES", "videploy[serve]", "tritonclient"):
        assert needle in text, needle


def test_missing_pytriton_says_how_to_install(monkeypatch, tmp_path, capsys):
    for name in ("pytriton", "pytriton.triton"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if it were not installed
    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs the Python package 'pytriton'" in err and "pip install 'videploy[serve]'" in err


def test_numpy_that_pytriton_cannot_use_is_refused(monkeypatch):
    from importlib import metadata

    from videploy.serve import triton

    monkeypatch.setattr(metadata, "requires", lambda name: ["numpy<2.0.0,>=1.21", "pytest; extra == 'test'"])
    monkeypatch.setattr(metadata, "version", lambda name: "0.7.0")
    monkeypatch.setattr(triton.np, "__version__", "2.4.6")
    with pytest.raises(VideployError, match=r"PyTriton 0\.7\.0 needs numpy<2\.0\.0,>=1\.21 .*empty tensors.*pip install 'videploy\[serve\]'"):
        triton.check_pytriton_numpy()
    monkeypatch.setattr(triton.np, "__version__", "1.26.4")
    triton.check_pytriton_numpy()  # a matching NumPy passes


@pytest.mark.parametrize("argv, message", [(["--http-port", "0"], "--http-port must be a TCP port"), (["--backend", "tensorrt", "--threads", "2"], "--threads applies to the onnxruntime backend")])
def test_bad_arguments(tmp_path, capsys, argv, message):
    bundle = static_bundle(tmp_path / "b", ToyStatic().eval())
    assert main(["serve", str(bundle), *argv]) == 2
    assert message in capsys.readouterr().err
