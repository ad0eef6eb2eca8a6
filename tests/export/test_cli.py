"""``videploy export`` / ``inspect`` / ``build`` through the real command line entry point."""

from __future__ import annotations

import json

import pytest

from videploy.bundle.manifest import BatchRange, read_manifest
from videploy.cli import main


@pytest.fixture(scope="module")
def cli_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    labels = root / "names.txt"
    labels.write_text("\n".join(f"action {i}" for i in range(3)) + "\n")
    out = root / "stam"
    argv = [
        "export", "stam", "-o", str(out),
        "--set", "img_size=32", "--set", "embed_dim=32", "--set", "depth=1", "--set", "num_heads=2",
        "--frames", "4", "--num-classes", "3", "--batch", "1:2:4", "--labels", str(labels),
    ]  # fmt: skip
    return out, argv


def test_export_command(cli_bundle, capsys):
    out, argv = cli_bundle
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "RANDOM WEIGHTS" in captured.err
    assert "main.logits" in captured.out and "verification" in captured.out
    m = read_manifest(out)
    assert (m.family, m.model_name, m.num_classes, m.batch) == ("stam", "stam", 3, BatchRange(1, 2, 4))
    assert m.config["embed_dim"] == 32 and m.config["depth"] == 1 and m.config["aggregate"]["clip_length"] == 4
    assert m.preprocessing.num_frames == 4 and m.preprocessing.crop_size == (32, 32)
    assert m.labels == "labels.txt" and (out / "labels.txt").read_text().startswith("action 0")
    assert m.provenance["overrides"] == {"img_size": 32, "embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 4, "num_classes": 3}


def test_inspect_command(cli_bundle, capsys):
    out, argv = cli_bundle
    if not (out / "manifest.json").exists():
        main(argv)
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    for needle in ("stam (stam)", "RANDOM", "graph 'main'", "video", "(batch, 4, 3, 32, 32)", "logits", "(batch, 3)", "float32",
                   "GFLOPs", "verification passed", "opset 20", "labels.txt", "uniform sampling", "engines: none"):  # fmt: skip
        assert needle in text, needle
    assert main(["inspect", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d == read_manifest(out).to_dict()


def test_build_dry_run(cli_bundle, capsys):
    out, argv = cli_bundle
    if not (out / "manifest.json").exists():
        main(argv)
    capsys.readouterr()
    assert main(["build", str(out), "--precision", "fp16", "--dry-run", "--tensorrt-version", "11.0.0"]) == 0
    text = capsys.readouterr().out
    assert "strongly typed" in text and "main.fp16.onnx (converted from main.onnx) -> main.fp16.engine" in text
    assert "video: min [1, 4, 3, 32, 32] opt [2, 4, 3, 32, 32] max [4, 4, 3, 32, 32]" in text
    assert "graph 'main': fp16 conversion checked" in text  # the conversion really ran
    assert not (out / "main.fp16.onnx").exists()  # ... in memory
    assert "fp16 conversion" not in _dry_run_text(out, "10.3.0", capsys)  # TensorRT 10 converts nothing
    assert main(["build", str(out), "--precision", "int8", "--dry-run", "--tensorrt-version", "10.3"]) == 2
    assert "variants['int8']" in capsys.readouterr().err


def _dry_run_text(out, version, capsys) -> str:
    assert main(["build", str(out), "--precision", "fp16", "--dry-run", "--tensorrt-version", version]) == 0
    return capsys.readouterr().out


def test_build_dry_run_fails_on_a_graph_that_does_not_convert(cli_bundle, capsys, monkeypatch):
    from videploy.errors import VideployError
    from videploy.export import fp16

    out, argv = cli_bundle
    if not (out / "manifest.json").exists():
        main(argv)
    capsys.readouterr()

    def refuse(model, **kwargs):
        raise VideployError("the fp16 conversion produced an inconsistent graph (stand-in)")

    monkeypatch.setattr(fp16, "convert_to_fp16", refuse)
    assert main(["build", str(out), "--precision", "fp16", "--dry-run", "--tensorrt-version", "11.0.0"]) == 2
    assert "graph 'main' (main.onnx) cannot be converted to fp16" in capsys.readouterr().err


def test_cli_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["export", "stam", "-o", str(tmp_path / "x"), "--opset", "16"]) == 2
    assert "opset 16 is too old" in capsys.readouterr().err
    assert main(["export", "stam", "-o", str(tmp_path / "x"), "--batch", "4:2"]) == 2
    assert "--batch" in capsys.readouterr().err
    assert main(["export", "stam", "-o", str(tmp_path / "x"), "--set", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not a videploy bundle" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_help_teaches(capsys):
    texts = {}
    for cmd in ("export", "build", "inspect"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        texts[cmd] = capsys.readouterr().out
        assert "examples:" in texts[cmd]
    assert "MIN:OPT:MAX" in texts["export"] and "RANDOM" in texts["export"]
    assert "strongly typed" in texts["build"] and "--dry-run" in texts["build"]
