"""Calibration video lists and the calibration / held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from videploy.bundle.manifest import Preprocessing
from videploy.calibration.int8 import videos
from videploy.errors import VideployError

PRE = Preprocessing(num_frames=4, sampling="segments", crop_size=(16, 16), resize_short=18, mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from videploy.runtime.samples import write_synthetic_video

    d = tmp_path_factory.mktemp("vids")
    (d / "sub").mkdir()
    write_synthetic_video(d / "a.mp4", num_frames=12, size=(24, 32), fps=10.0, pattern="index")
    write_synthetic_video(d / "sub" / "b.avi", num_frames=12, size=(24, 32), fps=10.0, pattern="moving")
    (d / "notes.txt").write_text("not a video")
    return d


def test_files_directories_and_csv_lists(folder, tmp_path):
    assert [p.name for p in videos.video_files([folder])] == ["a.mp4", "b.avi"]
    csv = folder / "list.csv"
    csv.write_text("path,label\nsub/b.avi,1\n\na.mp4,0\n")
    assert [p.name for p in videos.video_files([csv])] == ["b.avi", "a.mp4"]
    # the same file twice is calibrated on once
    assert len(videos.video_files([folder / "a.mp4", folder, csv])) == 2
    with pytest.raises(VideployError, match="does not exist"):
        videos.video_files([tmp_path / "nope.mp4"])
    with pytest.raises(VideployError, match="no video files"):
        videos.video_files([tmp_path])
    bad = tmp_path / "bad.csv"
    bad.write_text("a.mp4\nmissing.mp4\n")
    with pytest.raises(VideployError, match="line 2"):
        videos.video_files([bad])
    with pytest.raises(VideployError, match="no calibration videos"):
        videos.video_files([])


def test_clips_are_split_and_capped(folder, tmp_path):
    files = videos.video_files([folder])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    cs = videos.decode_clips([*files, broken], PRE, clips_per_video=3, max_clips=5, holdout_every=2)
    assert len(cs.calibration) == 3 and len(cs.holdout) == 2
    assert [(c.source.endswith("a.mp4"), c.index) for c in cs.holdout] == [(True, 1), (False, 0)]
    assert cs.calibration[0].frames.shape == (4, 3, 16, 16) and cs.calibration[0].frames.dtype == np.float32
    everything = videos.decode_clips([*files, broken], PRE, clips_per_video=2, max_clips=99, holdout_every=0)
    assert len(everything.calibration) == 4 and not everything.holdout and "broken.mp4" in everything.skipped[0]
    with pytest.raises(VideployError, match="holdout-every"):
        videos.decode_clips(files, PRE, holdout_every=1)


def test_data_key_changes_with_content_and_choices(folder, tmp_path):
    files = videos.video_files([folder])
    k = videos.data_key(files, PRE, 4, 64, 4)
    assert k == videos.data_key(files, PRE, 4, 64, 4)
    assert k != videos.data_key(files, PRE, 3, 64, 4)
    copy = tmp_path / "a.mp4"
    copy.write_bytes(files[0].read_bytes() + b"\x00")
    assert k != videos.data_key([copy, files[1]], PRE, 4, 64, 4)
