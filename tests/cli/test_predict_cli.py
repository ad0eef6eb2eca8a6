"""``videploy predict`` end to end on toy bundles and real / damaged video files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.runtime.damaged import faststart, truncate
from tests.runtime.toys import (
    EXIT_GFLOPS,
    TF,
    ToyAdaFocus,
    ToyStatic,
    adaptive_bundle,
    static_bundle,
)
from videploy import runtime
from videploy.cli import main
from videploy.runtime.samples import sample_video_path, write_synthetic_video

VIDEO = str(sample_video_path())


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return static_bundle(d / "static", ToyStatic().eval(), labels=[f"label {i}" for i in range(7)]), adaptive_bundle(d / "ada", ToyAdaFocus().eval())


def run_json(capsys, *argv) -> tuple[int, dict]:
    code = main(["predict", *map(str, argv), "--json", "--threads", "1"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out)


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("examples:", "--budget", "--views", "Eq. 7", "calibration set", "--visualize", "without PyTorch"):
        assert needle in text


def test_table_output(capsys, bundles):
    static, _ = bundles
    assert main(["predict", str(static), VIDEO, "--top-k", "2", "--views", "1x3"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in out and "label " in out and "views 1x3" in out and "%" in out


def test_json_matches_the_api(capsys, bundles):
    static, _ = bundles
    code, doc = run_json(capsys, static, VIDEO, "--views", "2x3", "--top-k", "3")
    assert code == 0 and doc["random_weights"] is True and doc["errors"] == []
    api = runtime.load(static, threads=1).predict(VIDEO, views="2x3", top_k=3)
    r = doc["results"][0]
    assert [t["index"] for t in r["top"]] == [c.index for c in api.top]
    np.testing.assert_allclose([t["probability"] for t in r["top"]], [c.probability for c in api.top], rtol=1e-6)
    assert r["top"][0]["label"] == f"label {api.top[0].index}"
    assert doc["work"]["rows"]["main"] == 6


def test_damaged_inputs_are_reported_one_by_one(capsys, bundles, tmp_path):
    static, _ = bundles
    good = write_synthetic_video(tmp_path / "good.mp4", 30, (48, 64), pattern="moving")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    (tmp_path / "zero.mp4").write_bytes(b"")
    bad = {
        "truncated": truncate(sample_video_path(), tmp_path / "cut.mp4", 0.5),
        "zero": tmp_path / "zero.mp4",
        "text": tmp_path / "text.mp4",
        "missing": tmp_path / "missing.mp4",
        "directory": tmp_path,
    }
    partial = truncate(faststart(sample_video_path(), tmp_path / "fs.mp4"), tmp_path / "partial.mp4", 0.5)
    one = write_synthetic_video(tmp_path / "one.mp4", 1, (32, 32))
    tiny = write_synthetic_video(tmp_path / "tiny.mp4", 12, (8, 8))
    code = main(["predict", str(static), str(good), *map(str, bad.values()), str(partial), str(one), str(tiny), "--json", "--threads", "1"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == 2
    assert [r["source"] for r in doc["results"]] == [str(good), str(partial), str(one), str(tiny)]
    assert sorted(e["source"] for e in doc["errors"]) == sorted(map(str, bad.values()))
    assert any("claims 250 frames" in n for n in doc["results"][1]["notes"])
    assert any("fewer than the 4" in n for n in doc["results"][2]["notes"])
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("videploy predict: error:")]
    assert len(lines) == len(bad) and "Traceback" not in captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--thresholds", "1,2"], "for adaptive"),
        (["--continuous"], "for adaptive"),
        (["--no-continuous"], "for adaptive"),
        (["--views", "3"], "CLIPSxCROPS"),
        (["--top-k", "0"], "--top-k must be >= 1"),
        (["--backend", "tensorrt"], "tensorrt"),
        (["--checkpoint", "x.pth"], "--checkpoint is for --backend torch"),
    ],
)
def test_argument_errors(capsys, bundles, argv, message):
    static, _ = bundles
    assert main(["predict", str(static), VIDEO, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("videploy predict: error:") and message in err


def test_missing_bundle(capsys, tmp_path):
    assert main(["predict", str(tmp_path / "nope"), VIDEO]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_adaptive_thresholds_and_work(capsys, bundles):
    _, ada = bundles
    code, doc = run_json(capsys, ada, VIDEO, VIDEO, "--thresholds", "inf," + ",".join(["-inf"] * TF))
    assert code == 0 and doc["work"]["calls"] == {"glance": 1}
    assert all(r["adaptive"]["exit_step"] == 0 and r["gflops"] == EXIT_GFLOPS[0] for r in doc["results"])
    assert doc["thresholds"]["source"] == "given"
    assert main(["predict", str(ada), VIDEO, "--thresholds", "0.5,b"]) == 2
    assert "'b' is not a number" in capsys.readouterr().err
    assert main(["predict", str(ada), VIDEO, "--thresholds", "1,2"]) == 2
    assert "needs 4 thresholds, got 2" in capsys.readouterr().err


def test_budget_fits_thresholds_and_says_so(capsys, bundles, tmp_path):
    _, ada = bundles
    videos = [VIDEO] + [str(write_synthetic_video(tmp_path / f"v{i}.mp4", 40 + 10 * i, (64, 80), pattern="moving" if i % 2 else "index")) for i in range(5)]
    budget = (EXIT_GFLOPS[0] + EXIT_GFLOPS[-1]) / 2
    for continuous in (["--no-continuous"], [], ["--continuous"]):
        code, doc = run_json(capsys, ada, *videos, "--budget", budget, "--batch-size", 3, *continuous)
        assert code == 0
        spent = [r["gflops"] for r in doc["results"]]
        b = doc["thresholds"]
        assert np.mean(spent) <= budget + 1e-9 and np.mean(spent) == pytest.approx(b["expected_gflops"])
        assert "calibration set" in b["note"] and b["fitted_on"] == len(videos)
        exits = [r["adaptive"]["exit_step"] for r in doc["results"]]
        steps = len(EXIT_GFLOPS) - 1
        # one pass: every video decoded once and run through every step, to fit on its own entropies
        assert doc["work"]["rows"]["local"] == steps * len(videos) and "ran all focus steps once" in " ".join(doc["notes"])
        assert all(r["gflops"] == EXIT_GFLOPS[e] for r, e in zip(doc["results"], exits))
        # the exits it reports are the ones a live early-exit run with those thresholds takes
        eta = ",".join(str(t) for t in b["values"])
        code, live = run_json(capsys, ada, *videos, "--thresholds", eta, "--batch-size", 3, *continuous)
        assert code == 0 and [r["adaptive"]["exit_step"] for r in live["results"]] == exits
        assert live["work"]["rows"]["local"] == sum(exits)  # the live run really skips the steps
    main(["predict", str(ada), VIDEO, "--budget", str(budget)])
    assert "demonstration of Eq. 7" in capsys.readouterr().out.replace("\n", " ")
    assert main(["predict", str(ada), VIDEO, "--budget", "0.1"]) == 2
    assert "below the cheapest exit" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".png", ".mp4"])
def test_visualize(capsys, bundles, tmp_path, suffix):
    _, ada = bundles
    out = tmp_path / "not" / "yet" / f"focus{suffix}"  # missing directories are created
    assert main(["predict", str(ada), VIDEO, "--visualize", str(out), "--threads", "1"]) == 0
    assert str(out) in capsys.readouterr().out
    if suffix == ".png":
        img = cv2.imread(str(out))
        assert img is not None and img.shape[0] > 192 and img.shape[1] >= 192 * 2
    else:
        cap = cv2.VideoCapture(str(out))
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 6  # one per sampled frame
    # several videos -> numbered files
    multi = tmp_path / "many.png"
    assert main(["predict", str(ada), VIDEO, VIDEO, "--visualize", str(multi)]) == 0
    assert (tmp_path / "many_1.png").is_file() and (tmp_path / "many_2.png").is_file()
    static, _ = bundles
    assert main(["predict", str(static), VIDEO, "--visualize", str(out)]) == 2
    assert main(["predict", str(ada), VIDEO, "--visualize", str(tmp_path / "x.gif")]) == 2


# --- found by the damaged-corpus QA run ------------------------------------------------------------
def test_decoder_noise_is_hidden_and_each_failure_is_one_line(bundles, tmp_path):
    import os
    import subprocess
    import sys

    static, _ = bundles
    src = write_synthetic_video(tmp_path / "src.mp4", 60, (48, 64), pattern="moving")
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 400] = np.random.default_rng(0).bytes(400)  # FFmpeg complains per broken macroblock
    (tmp_path / "damaged.mp4").write_bytes(bytes(data))
    (tmp_path / "text.mp4").write_text("not a video\n")
    argv = [sys.executable, "-m", "videploy", "predict", str(static), str(tmp_path / "damaged.mp4"), str(tmp_path / "text.mp4"), "--threads", "1", "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_FFMPEG")} | {"COLUMNS": "60", "OMP_NUM_THREADS": "1"}
    quiet = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert quiet.returncode == 2
    assert len(json.loads(quiet.stdout)["results"]) == 1  # the damaged file is still predicted
    lines = quiet.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("videploy predict: error: ") and "text.mp4" in lines[0]
    assert lines[0].endswith("OUT.mp4")  # the whole message on one line, however narrow the terminal
    loud = subprocess.run(argv[:3] + ["-v"] + argv[3:], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert "[mpeg4 @" in loud.stderr  # the premise: FFmpeg does talk about this file


def test_absurd_views_and_stdin_fail_clearly(capsys, bundles):
    static, _ = bundles
    assert main(["predict", str(static), VIDEO, VIDEO, "--views", "100x1"]) == 2
    err = capsys.readouterr().err
    assert err.count("videploy predict: error:") == 1 and "num_clips must be between 1 and 64" in err
    assert main(["predict", str(static), "-", VIDEO, "--json"]) == 2
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["results"]) == 1 and "standard input" in captured.err
    # OpenCV's writers segfault on a path that is not valid UTF-8: refused before any work
    _, ada = bundles
    assert main(["predict", str(ada), VIDEO, "--visualize", "focus\udcff.png"]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err


def test_display_frames_are_kept_only_for_visualize(capsys, bundles, monkeypatch, tmp_path):
    from videploy.runtime.recognizer import Recognizer

    kept = []
    original = Recognizer._prediction

    def spy(self, vi, *args, **kwargs):
        kept.append(vi.display_frames is not None)
        return original(self, vi, *args, **kwargs)

    monkeypatch.setattr(Recognizer, "_prediction", spy)
    static, ada = bundles
    assert main(["predict", str(static), VIDEO, VIDEO, "--json", "--threads", "1"]) == 0
    assert main(["predict", str(ada), VIDEO, "--json", "--threads", "1"]) == 0
    assert kept == [False, False, False]  # a long run does not hold T display crops per video
    assert main(["predict", str(ada), VIDEO, "--visualize", str(tmp_path / "f.png"), "--threads", "1"]) == 0
    assert kept[-1] is True
