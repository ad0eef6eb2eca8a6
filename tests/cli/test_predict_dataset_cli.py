"""``videploy predict-dataset``: help, argument errors and a missing Ray, all before Ray starts."""

from __future__ import annotations

import sys

import pytest

from tests.runtime.toys import ToyAdaFocus, ToyStatic, adaptive_bundle, static_bundle
from videploy.cli import main
from videploy.cli.predict_dataset import parse_actors
from videploy.errors import VideployError
from videploy.runtime.samples import sample_video_path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return static_bundle(d / "static", ToyStatic().eval()), adaptive_bundle(d / "ada", ToyAdaFocus().eval())


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict-dataset", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("examples:", "resume", "--address", "--actors", "pandas.read_parquet", "path[,label]", "videploy[ray]", "damaged"):
        assert needle in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "predict-dataset" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--thresholds", "1,2"], "for adaptive"),
        (["--continuous"], "for adaptive"),
        (["--no-continuous"], "for adaptive"),
        (["--views", "3"], "CLIPSxCROPS"),
        (["--top-k", "0"], "top-k must be >= 1"),
        (["--batch-size", "5000"], "between 1 and the bundle's maximum"),
        (["--actors", "2-1"], "MIN <= MAX"),
        (["--actors", "two"], "expected N or MIN-MAX"),
        (["--shard-rows", "0"], "shard rows must be >= 1"),
        (["--address", "auto", "--num-cpus", "2"], "--num-cpus sizes a local Ray instance"),
        (["--num-cpus", "2", "--actors", "2"], "need 3 CPUs, but the Ray cluster has 2"),  # would wait forever
    ],
)
def test_argument_errors_come_before_any_work(capsys, bundles, tmp_path, argv, message):
    static, _ = bundles
    out = tmp_path / "out"
    assert main(["predict-dataset", str(static), str(sample_video_path()), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("videploy predict-dataset: error:") and message in err
    assert not out.exists()  # refused before anything was written


def test_adaptive_threshold_count_is_checked(capsys, bundles, tmp_path):
    _, ada = bundles
    assert main(["predict-dataset", str(ada), str(sample_video_path()), "-o", str(tmp_path / "o"), "--thresholds", "1,2"]) == 2
    assert "threshold" in capsys.readouterr().err


def test_missing_input_and_bundle(capsys, bundles, tmp_path):
    static, _ = bundles
    assert main(["predict-dataset", str(static), str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict-dataset", str(tmp_path / "nobundle"), str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "videploy predict-dataset: error:" in capsys.readouterr().err


def test_missing_ray_says_how_to_install(capsys, bundles, tmp_path, monkeypatch):
    static, _ = bundles
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    assert main(["predict-dataset", str(static), str(sample_video_path()), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'videploy[ray]'" in err and "Traceback" not in err


def test_parse_actors():
    assert parse_actors(None) is None and parse_actors("3") == 3 and parse_actors("1-4") == (1, 4)
    with pytest.raises(VideployError):
        parse_actors("1-2-3")
