"""``videploy calibrate-exits`` end to end on a toy AdaFocusV3 bundle and small video files."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from tests.runtime.toys import EXIT_GFLOPS, TF, ToyAdaFocus, ToyStatic, adaptive_bundle, static_bundle
from videploy.bundle.manifest import read_manifest
from videploy.calibration import dynamic_evaluation
from videploy.calibration.exit_logits import collect_exit_logits
from videploy.calibration.labelled_videos import read_labelled_videos, split_indices
from videploy.cli import main
from videploy.runtime import load
from videploy.runtime.samples import write_synthetic_video


@pytest.fixture(scope="module")
def toy() -> ToyAdaFocus:
    return ToyAdaFocus().eval()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[tuple[str, int]]:
    d = tmp_path_factory.mktemp("videos")
    out = []
    for i in range(10):
        path = write_synthetic_video(d / f"v{i}.avi", num_frames=12 + 3 * i, size=(24 + 4 * (i % 3), 32), pattern="index" if i % 2 else "moving")
        out.append((str(path), i % 7))
    return out


@pytest.fixture
def bundle(tmp_path, toy):
    return adaptive_bundle(tmp_path / "ada", toy)


def write_csv(path, videos, header=True) -> str:
    rows = (["path,label"] if header else []) + [f"{p},{label}" for p, label in videos]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as info:
        main(["calibrate-exits", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("examples:", "--budget", "--curve", "floor(N p_t)", "held-out", "confidence", "videploy[plot]", "atomically"):
        assert needle in text


def test_budget_writes_thresholds_the_runtime_uses(tmp_path, capsys, bundle, videos):
    csv_path = write_csv(tmp_path / "videos.csv", videos)
    budget = 1.6
    assert main(["calibrate-exits", str(bundle), "--videos", csv_path, "--budget", str(budget), "--threads", "1", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "held-out" in out and "glance only" in out and "all steps" in out and "wrote entropy thresholds" in out
    ee = read_manifest(bundle).early_exit
    assert ee.criterion == "entropy" and ee.thresholds is not None and len(ee.thresholds) == TF + 1
    # the same numbers through the public API: fitted on the seeded fit split, within the budget on the held-out split
    rec = load(bundle, threads=1)
    listed = read_labelled_videos(csv_path, 7)
    logits = collect_exit_logits(rec, [v.path for v in listed]).logits
    labels = np.array([v.label for v in listed])
    fit, held = split_indices(len(listed), 0.5, 3)
    from videploy.calibration import budget_search

    chosen, _ = budget_search(logits[fit], logits[held], labels[held], EXIT_GFLOPS, budget)
    assert ee.thresholds == pytest.approx(chosen.thresholds) and chosen.gflops <= budget
    # predict uses the stored thresholds by default: the held-out videos exit where the evaluation said
    preds = rec.predict_batch([listed[i].path for i in held])
    counts = np.bincount([p.adaptive.exit_step for p in preds], minlength=TF + 1)
    assert tuple(counts) == chosen.exit_counts
    assert np.mean([p.gflops for p in preds]) == pytest.approx(chosen.gflops)


def test_folders_confidence_and_curve(tmp_path, capsys, bundle, videos):
    pytest.importorskip("matplotlib")
    root = tmp_path / "by_class"
    for path, label in videos:
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / str(label))
    (root / "3" / "notes.txt").write_text("not a video")
    curve = tmp_path / "out" / "curve"
    assert main(["calibrate-exits", str(bundle), "--videos", str(root), "--criterion", "confidence", "--curve", str(curve), "--budget", "2.75", "--threads", "1"]) == 0
    doc = json.loads((tmp_path / "out" / "curve.json").read_text())
    assert doc["criterion"] == "confidence" and doc["fit_videos"] + doc["heldout_videos"] == len(videos)
    assert (tmp_path / "out" / "curve.png").is_file() and (tmp_path / "out" / "curve.csv").is_file()
    ee = read_manifest(bundle).early_exit
    assert ee.criterion == "confidence"
    assert ee.thresholds == (math.inf,) * TF + (-math.inf,)  # the full budget: max logit >= inf never stops; the last exit always does
    # the table's rows are the official q's, and match the public API
    listed = read_labelled_videos(root, 7)
    assert sorted(v.label for v in listed) == sorted(label for _, label in videos)
    rec = load(bundle, threads=1)
    logits = collect_exit_logits(rec, [v.path for v in listed]).logits
    fit, held = split_indices(len(listed), 0.5, 0)
    labels = np.array([v.label for v in listed])
    pts = dynamic_evaluation(logits[fit], logits[held], labels[held], EXIT_GFLOPS, criterion="confidence")
    assert [d["exit_counts"] for d in doc["dynamic"]] == [list(p.exit_counts) for p in pts]


def test_user_errors(tmp_path, capsys, bundle, videos):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{videos[0][0]},9\n")
    assert main(["calibrate-exits", str(bundle), "--videos", str(bad)]) == 2
    assert "class index 9 is outside [0, 7)" in capsys.readouterr().err
    bad.write_text(f"{videos[0][0]},walking\n")
    assert main(["calibrate-exits", str(bundle), "--videos", str(bad)]) == 2
    assert "neither a class index" in capsys.readouterr().err
    assert main(["calibrate-exits", str(bundle), "--videos", str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    csv_path = write_csv(tmp_path / "v.csv", videos[:4], header=False)
    assert main(["calibrate-exits", str(bundle), "--videos", csv_path, "--budget", "0.1"]) == 2
    assert "below the cheapest exit" in capsys.readouterr().err
    assert main(["calibrate-exits", str(bundle), "--videos", csv_path, "--fit-fraction", "1.0"]) == 2
    assert "--fit-fraction" in capsys.readouterr().err
    static = static_bundle(tmp_path / "static", ToyStatic().eval())
    assert main(["calibrate-exits", str(static), "--videos", csv_path]) == 2
    assert "adaptive (AdaFocusV3) bundles" in capsys.readouterr().err
    assert read_manifest(bundle).early_exit.thresholds is None  # nothing was written
