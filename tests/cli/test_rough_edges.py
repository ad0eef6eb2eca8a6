"""The rough edges a new user hit on the command line, each pinned down (GPU-user issue, item 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.toys import TF, ToyAdaFocus, ToyStatic, adaptive_bundle, static_bundle
from videploy.cli import main
from videploy.runtime.samples import sample_video_path

VIDEO = str(sample_video_path())
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("edges")
    long_names = [f"a class name long enough to be cut at eighty columns number {i}" for i in range(7)]
    return static_bundle(d / "static", ToyStatic().eval(), labels=long_names), adaptive_bundle(d / "ada", ToyAdaFocus().eval())


def test_thresholds_may_start_with_minus_inf(capsys, bundles):
    _, ada = bundles
    eta = ",".join(["-inf"] * (TF + 1))
    assert main(["predict", str(ada), VIDEO, "--thresholds", eta, "--json", "--threads", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["thresholds"]["source"] == "given" and doc["thresholds"]["values"] == ["-inf"] * (TF + 1)
    # the note says what happened, consistently with the JSON (not "no thresholds")
    notes = " ".join(doc["results"][0]["notes"])
    assert "no exit thresholds stop any video" in notes and "all set to never stop" in notes


def test_json_uses_one_strict_encoding_and_states_box_coordinates(capsys, bundles):
    _, ada = bundles
    assert main(["predict", str(ada), VIDEO, "--thresholds", "inf," + ",".join(["-inf"] * TF), "--json"]) == 0
    text = capsys.readouterr().out
    assert "Infinity" not in text and "NaN" not in text
    doc = json.loads(text)
    a = doc["results"][0]["adaptive"]
    assert "model's input frame" in a["box_coordinates"] and doc["results"][0]["timing"]["latency_s"] > 0


def test_verbose_flag_after_the_subcommand(capsys, bundles):
    static, _ = bundles
    assert main(["predict", str(static), VIDEO, "-v", "--threads", "1"]) == 0
    assert main(["-v", "predict", str(static), VIDEO, "--threads", "1"]) == 0


def test_piped_tables_keep_whole_numbers_and_names(bundles, tmp_path):
    """Piped output (not a terminal): nothing is cut at 80 columns."""
    static, _ = bundles
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    proc = subprocess.run(
        [sys.executable, "-m", "videploy", "predict", str(static), VIDEO, "--top-k", "7", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    for i in range(7):
        assert f"long enough to be cut at eighty columns number {i}" in proc.stdout


def test_batch_size_past_the_profile_runs_on_onnxruntime(capsys, bundles):
    static, _ = bundles  # batch range 1..8 (the TensorRT profile); onnxruntime graphs are batch-dynamic
    assert main(["predict", str(static), VIDEO, VIDEO, "--batch-size", "16", "--threads", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 2


def test_random_weights_warning_is_printed_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["export", "stam_8", "-o", str(tmp_path / "b"), "--set", "img_size=32", "--set", "embed_dim=32", "--set", "depth=1",
            "--set", "num_heads=2", "--set", "num_classes=3", "--set", "aggregate={'clip_length': 8, 'embed_dim': 32, 'n_layers': 1}"]
    proc = subprocess.run([sys.executable, "-m", "videploy", *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (proc.stdout + proc.stderr).count("no --checkpoint was given") == 1
