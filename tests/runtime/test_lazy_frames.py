"""Deferred focus frames (runtime/lazy_frames.py): the same numbers as decoding everything, less work."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from tests.runtime.toys import GLANCE_INDICES, S, SIZE, TF
from videploy import runtime
from videploy.bundle.manifest import Preprocessing
from videploy.errors import VideployError
from videploy.runtime.lazy_frames import LazyFrames
from videploy.runtime.samples import decode_index, write_synthetic_video
from videploy.runtime.video import load_video

PRE = Preprocessing(num_frames=12, sampling="segments", crop_size=(32, 32), resize_short=36, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
GLANCE = (1, 4, 7, 10)
DEFER = [p for p in range(12) if p not in GLANCE]


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    return write_synthetic_video(tmp_path_factory.mktemp("lazy") / "index.mp4", num_frames=300, size=(48, 64), fps=25)


@pytest.mark.parametrize("seek", [False, True])
def test_deferred_frames_equal_the_eager_views_bit_for_bit(mp4, seek):
    eager = load_video(mp4, PRE, seek=seek)
    lazy = load_video(mp4, PRE, seek=seek, defer=DEFER)
    assert isinstance(lazy.lazy, LazyFrames) and lazy.views.size == 0
    assert lazy.frame_indices.tolist() == eager.frame_indices.tolist() and lazy.num_frames == eager.num_frames
    frames = lazy.lazy
    assert frames.shape == (12, 3, 32, 32) and frames.prepared == 0  # nothing deferred was touched at load
    np.testing.assert_array_equal(frames[list(GLANCE)], eager.views[0][list(GLANCE)])
    assert frames.prepared == 0  # the glance frames were ready
    np.testing.assert_array_equal(frames[[3, 9]], eager.views[0][[3, 9]])
    assert frames.prepared == 2
    np.testing.assert_array_equal(frames[np.arange(12)], eager.views[0])  # every position, any order of asking
    assert frames.prepared == len(DEFER)
    display = frames.display()
    np.testing.assert_array_equal(display, eager.display_frames)
    assert [decode_index(f) for f in display] == eager.frame_indices[0].tolist()
    frames.close()
    with pytest.raises(VideployError, match="already released"):
        frames[[3]]


def test_seeking_defers_the_decoding_itself(mp4, tmp_path):
    """With frames far apart the reader seeks, so a deferred frame is decoded only when asked for:
    a file that disappears in between is reported, naming it."""
    copy = shutil.copy(mp4, tmp_path / "gone.mp4")
    frames = load_video(copy, PRE, seek=True, defer=DEFER).lazy
    np.testing.assert_array_equal(frames[[1]], load_video(mp4, PRE, seek=True).views[0][[1]])  # glance: decoded already
    (tmp_path / "gone.mp4").write_bytes(b"not a video any more")
    np.asarray(frames[[4]])  # a glance frame still needs nothing from the file
    with pytest.raises(VideployError, match="gone.mp4"):
        frames[[5]]
    frames.close()


def test_prefetch_prepares_on_the_given_thread(mp4):
    from concurrent.futures import ThreadPoolExecutor

    seen = []

    class Spy(ThreadPoolExecutor):
        def submit(self, fn, *a, **kw):
            seen.append(threading.current_thread().name)
            return super().submit(fn, *a, **kw)

    with Spy(max_workers=1) as pool:
        frames = load_video(mp4, PRE, defer=DEFER, prefetch=pool).lazy
        frames.prefetch([1, 4])  # glance frames: ready, nothing to submit
        assert seen == []
        frames.prefetch([2, 3])
        assert len(seen) == 1
    assert frames.prepared == 2  # done on the pool, not by the caller
    frames.close()


def test_defer_needs_one_view(mp4):
    with pytest.raises(VideployError, match="one view"):
        load_video(mp4, PRE, num_clips=2, defer=DEFER)


def test_a_frame_a_glance_position_also_uses_is_read_now(tmp_path):
    """A video shorter than T repeats frames: a frame that both a glance and a deferred position use
    is prepared at load."""
    short = write_synthetic_video(tmp_path / "short.mp4", num_frames=5, size=(48, 64), fps=25)
    eager = load_video(short, PRE)
    frames = load_video(short, PRE, defer=DEFER).lazy
    np.testing.assert_array_equal(frames[np.arange(12)], eager.views[0])
    glance_frames = {int(eager.frame_indices[0][p]) for p in GLANCE}
    deferred_only = {int(eager.frame_indices[0][p]) for p in DEFER} - glance_frames
    assert frames.prepared == len(deferred_only)
    frames.close()


# --- through the recognizer ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("toyvids")
    return [str(write_synthetic_video(d / f"v{i}.mp4", num_frames=20 + 7 * i, size=(24 + 8 * i, 32), fps=25, pattern="moving" if i % 2 else "index")) for i in range(5)]


@pytest.mark.parametrize("continuous", [False, True])
def test_recognizer_lazy_and_eager_give_identical_predictions(adaptive_dir, toy_files, continuous):
    probe = runtime.load(adaptive_dir, threads=1)
    ent = np.array([p.adaptive.entropies for p in probe.predict_batch(toy_files, thresholds=[-np.inf] * (TF + 1))])
    probe.close()
    eta = [float(np.sort(ent[:, t])[t]) for t in range(TF)] + [float("inf")]  # exit t stops the t+1 lowest: a spread of exits
    runs = {}
    for lazy in (False, True):
        rec = runtime.load(adaptive_dir, threads=1, lazy_frames=lazy)
        runs[lazy] = rec.predict_batch(toy_files, thresholds=eta, batch_size=2, continuous=continuous)
        rec.close()
    for a, b in zip(runs[False], runs[True]):
        assert a.adaptive.exit_step == b.adaptive.exit_step
        assert [c.frames for c in a.adaptive.cubes] == [c.frames for c in b.adaptive.cubes]
        np.testing.assert_array_equal(a.probabilities, b.probabilities)
        np.testing.assert_array_equal(a.display_frames, b.display_frames)  # drawn from every sampled frame
    assert len({p.adaptive.exit_step for p in runs[True]}) > 1, "the thresholds should spread the exits"


def test_recognizer_prepares_focus_frames_only_for_videos_that_reach_them(adaptive_dir, toy_files, monkeypatch):
    made: list[LazyFrames] = []
    original = LazyFrames.__init__

    def spy(self, *a, **kw):
        original(self, *a, **kw)
        made.append(self)

    monkeypatch.setattr(LazyFrames, "__init__", spy)
    rec = runtime.load(adaptive_dir, threads=1, decode_workers=0)
    preds = list(rec.iter_predict(toy_files, thresholds=[float("inf")] * (TF + 1), batch_size=2, keep_display=False))  # all stop at the glance
    assert all(p.adaptive.exit_step == 0 for p in preds) and len(made) == len(toy_files)
    assert all(f.prepared == 0 for f in made)  # no focus frame of any video was made ready (nothing drawn either)
    made.clear()
    preds = list(rec.iter_predict(toy_files, thresholds=[-np.inf] * (TF + 1), batch_size=2, keep_display=False))
    for p, f in zip(preds, made):
        chosen = {int(f.sampled[i]) for c in p.adaptive.cubes for i in c.sampled}
        glance = {int(f.sampled[i]) for i in GLANCE_INDICES}
        assert f.prepared == len(chosen - glance)  # exactly the chosen frames the glance had not read
    assert sum(f.prepared for f in made) > 0
    rec.close()
    assert S == 6 and len(GLANCE_INDICES) == 3 and SIZE == 16  # the toy this test reasons about


def test_deferred_frames_kept_unconverted_stay_within_a_memory_budget(mp4, monkeypatch):
    """Past MAX_RAW_BYTES per video, deferred frames are converted at once (a 4K video would
    otherwise hold 25 MB per deferred frame); the numbers do not change."""
    from videploy.runtime import video as video_mod
    from videploy.runtime.video import RawFrame

    frame_bytes = 48 * 64 * 3
    monkeypatch.setattr(video_mod, "MAX_RAW_BYTES", 3 * frame_bytes)
    lazy = load_video(mp4, PRE, seek=False, defer=DEFER).lazy
    raw = [v for v in lazy._kept.values() if isinstance(v, RawFrame)]
    assert len(raw) == 3 and sum(r.bgr.nbytes for r in raw) <= 3 * frame_bytes
    np.testing.assert_array_equal(lazy[np.arange(12)], load_video(mp4, PRE, seek=False).views[0])
    assert lazy.prepared == 3  # only the three kept raw needed work later
    lazy.close()
