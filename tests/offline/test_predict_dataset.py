"""``predict-dataset`` end to end on a local Ray instance (2 CPUs): rows equal ``videploy predict``,
damaged videos become error rows, a job killed midway resumes without duplicates.

Few and small on purpose (toy bundles, tiny videos, one Ray instance for the module): Ray's own
start-up dominates. Skipped, with the reason, only where Ray is not installed or cannot start;
on CI a missing Ray is a failure (the test command must install the ``ray`` extra).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.runtime.damaged import truncate
from tests.runtime.toys import ToyAdaFocus, ToyStatic, adaptive_bundle, static_bundle
from videploy.cli import main
from videploy.runtime.samples import sample_video_path, write_synthetic_video

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def _ray():
    try:
        import ray
        import ray.data  # the data extra (pandas, pyarrow) must import too
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Ray Data is not installed ({exc}); CI must install the ray extra: pip install -e '.[torch,test,ray]'")
        pytest.skip(f"Ray Data is not installed ({exc}): pip install -e '.[ray]'")
    return ray


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance for the module, bounded: 2 CPUs, a small object store, no dashboard."""
    ray = _ray()
    import logging

    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2, logging_level=logging.WARNING)
    except Exception as exc:  # Ray cannot start here (no shared memory, ports, ...): say why
        pytest.skip(f"a local Ray instance cannot start on this machine: {type(exc).__name__}: {exc}")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return static_bundle(d / "static", ToyStatic().eval(), labels=[f"label {i}" for i in range(7)]), adaptive_bundle(d / "ada", ToyAdaFocus().eval())


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A directory of generated videos (different lengths and sizes) and damaged files: (dir, good, damaged)."""
    d = tmp_path_factory.mktemp("videos")
    (d / "sub").mkdir()
    good = [write_synthetic_video(d / ("sub" if i % 2 else ".") / f"clip{i}.mp4", 3 + 7 * i, (40 + 8 * i, 56), pattern="moving") for i in range(6)]
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    (d / "zero.avi").write_bytes(b"")
    damaged = [d / "text.mp4", d / "zero.avi", truncate(sample_video_path(), d / "cut.mp4", 0.5)]
    return d, [str(p.resolve()) for p in good], [str(p.resolve()) for p in damaged]


def predict_json(capsys, bundle, paths, *extra) -> dict:
    main(["predict", str(bundle), *paths, "--json", "--threads", "1", *extra])
    return json.loads(capsys.readouterr().out)


def assert_row_equals_prediction(row, r) -> None:
    assert row["error"] is None, row["error"]
    assert list(row["top_indices"]) == [t["index"] for t in r["top"]]
    assert list(row["top_labels"]) == [t["label"] for t in r["top"]]
    # the same code path; a different batch composition may only reorder float sums
    np.testing.assert_allclose(row["top_probabilities"], [t["probability"] for t in r["top"]], rtol=1e-6, atol=1e-9)
    assert row["num_frames"] == r["num_frames"] and [list(c) for c in row["frame_indices"]] == r["frame_indices"]
    assert row["gflops"] == pytest.approx(r["gflops"]) and list(row["notes"]) == r["notes"]
    a = r.get("adaptive")
    if a is None:
        assert row["exit_step"] is None and row["cubes"] is None
    else:
        assert (row["exit_step"], row["num_steps"]) == (a["exit_step"], a["num_steps"])
        assert row["full_gflops"] == pytest.approx(a["full_gflops"])
        assert [(c["step"], list(c["frames"])) for c in row["cubes"]] == [(c["step"], c["frames"]) for c in a["cubes"]]
        np.testing.assert_allclose([c["box_xyxy"] for c in row["cubes"]], [c["box_xyxy"] for c in a["cubes"]], rtol=1e-6)
    assert row["decode_s"] > 0 and row["infer_s"] > 0 and row["finished_at"] > 1.7e9


def rows_by_path(out: Path) -> dict[str, dict]:
    """OUT's rows by path, read the way a user would (pyarrow on the directory; pandas gives NaN for nulls)."""
    import pyarrow.parquet as pq

    from videploy.offline import read_results

    rows = pq.read_table(out).to_pylist()
    assert len({r["path"] for r in rows}) == len(rows) == len(read_results(out)), "a video was written twice"
    return {r["path"]: r for r in rows}


def test_stages_stay_apart(ray_address, bundles, videos):
    """Decoding runs as CPU tasks and inference in an actor pool (Ray must not fuse the two)."""
    import contextlib
    import io

    from videploy.offline.api import check_request
    from videploy.offline.dataset import list_videos
    from videploy.offline.options import PredictOptions, ScaleOptions
    from videploy.offline.ray_pipeline import build_dataset

    static, _ = bundles
    m, views = check_request(str(static), PredictOptions())
    ds = build_dataset(list_videos(videos[0]), str(static), m, views, PredictOptions(), ScaleOptions(actors=2))
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        ds.explain()
    optimized = text.getvalue().split("Physical Plan (Optimized)")[-1]
    assert "TaskPoolMapOperator[MapBatches(decode_batch)]" in optimized
    assert "ActorPoolMapOperator[MapBatches(InferenceActor)]" in optimized


def test_directory_rows_equal_predict_and_damaged_videos_are_rows(ray_address, bundles, videos, tmp_path, capsys):
    static, _ = bundles
    root, good, damaged = videos
    out = tmp_path / "preds"
    code = main(["predict-dataset", str(static), str(root), "-o", str(out), "--address", ray_address, "--top-k", "3", "--json", "--inference-batch", "4"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["written"] == len(good) + len(damaged) and summary["errors"] == len(damaged)
    rows = rows_by_path(out)
    assert set(rows) == set(good) | set(damaged)

    expected = predict_json(capsys, static, good, "--top-k", "3")
    for r in expected["results"]:
        assert_row_equals_prediction(rows[r["source"]], r)
    failed = predict_json(capsys, static, damaged, "--top-k", "3")["errors"]
    assert {e["source"]: e["error"] for e in failed} == {p: rows[p]["error"] for p in damaged}
    for p in damaged:
        assert rows[p]["top_indices"] is None

    # the same command again: everything is done, nothing is written
    assert main(["predict-dataset", str(static), str(root), "-o", str(out), "--address", ray_address, "--top-k", "3"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert len(rows_by_path(out)) == len(good) + len(damaged)


def test_adaptive_csv_with_labels_and_thresholds(ray_address, bundles, videos, tmp_path, capsys):
    """AdaFocusV3: exits, cubes and GFLOPs per video as predict reports them; CSV labels kept."""
    from videploy.offline import PredictOptions, ScaleOptions, predict_dataset

    _, ada = bundles
    _, good, damaged = videos
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\n" + "".join(f"{os.path.relpath(p, tmp_path)},class{i}\n" for i, p in enumerate(good)) + f"{damaged[0]},\n")
    # thresholds at the median entropy of each exit: some videos leave early, others go on
    full = predict_json(capsys, ada, good, "--thresholds=-inf,-inf,-inf,-inf")["results"]
    eta = [float(np.median([r["adaptive"]["entropies"][t] for r in full])) for t in range(3)] + [-np.inf]
    thresholds = ",".join(repr(t) for t in eta)
    summary = predict_dataset(
        ada, csv, tmp_path / "out", PredictOptions(top_k=2, thresholds=tuple(eta), continuous=True, threads=1), ScaleOptions(actors=1, inference_batch=3)
    )
    assert (summary.written, summary.errors, summary.skipped) == (len(good) + 1, 1, 0)
    rows = rows_by_path(tmp_path / "out")
    expected = predict_json(capsys, ada, good, "--top-k", "2", f"--thresholds={thresholds}")["results"]
    assert len({r["adaptive"]["exit_step"] for r in expected}) > 1, "the thresholds should make videos exit at different steps"
    for i, r in enumerate(expected):
        assert_row_equals_prediction(rows[r["source"]], r)
        assert rows[r["source"]]["label"] == f"class{i}"
    assert rows[damaged[0]]["label"] is None and "not a video" in rows[damaged[0]]["error"]


KILLED_RUN = """
import os, signal, sys
from videploy.offline import PredictOptions, ScaleOptions, predict_dataset

def die_after_two_shards(p):
    if p.shards >= 2:  # a hard crash midway: no cleanup, no finally blocks
        os.kill(os.getpid(), signal.SIGKILL)

predict_dataset(sys.argv[1], sys.argv[2], sys.argv[3], PredictOptions(threads=1),
                ScaleOptions(address=sys.argv[4], shard_rows=2, inference_batch=1, decode_batch=1),
                progress=die_after_two_shards)
sys.exit(3)  # never reached while the job still has videos left
"""


def test_killed_midway_then_rerun_finishes_without_duplicates(ray_address, bundles, videos, tmp_path, capsys):
    static, _ = bundles
    root, good, damaged = videos
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_RUN), str(static), str(root), str(out), ray_address],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    first = sorted(p.name for p in out.glob("part-*.parquet"))
    assert len(first) == 2 and len(rows_by_path(out)) == 4  # two shards of two rows made it to disk
    (out / ".tmp-part-crashed-000009.parquet").write_bytes(b"PAR1 half a shard")  # what a crash mid-write leaves

    code = main(["predict-dataset", str(static), str(root), "-o", str(out), "--address", ray_address, "--json", "--threads", "1"])
    summary = json.loads(capsys.readouterr().out)
    total = len(good) + len(damaged)
    assert code == 0 and (summary["skipped"], summary["written"]) == (4, total - 4)
    rows = rows_by_path(out)  # asserts each path once
    assert set(rows) == set(good) | set(damaged)
    assert set(first) <= {p.name for p in out.glob("part-*.parquet")}  # the first run's shards are kept as they were
    assert not list(out.glob(".tmp-*"))
    expected = predict_json(capsys, static, good)["results"]
    for r in expected:
        assert_row_equals_prediction(rows[r["source"]], r)
