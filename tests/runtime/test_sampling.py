"""Frame-index formulas against independent re-derivations of each official sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videploy.errors import VideployError
from videploy.runtime.sampling import (
    clip_indices,
    sample_indices,
    segment_indices,
    uniform_indices,
)

LENGTHS = [1, 2, 3, 5, 7, 8, 9, 16, 31, 32, 33, 100, 250, 301, 1000]


def mmaction_test_clip(n: int, T: int, fi: int) -> list[int]:
    # mmaction SampleFrames(clip_len=1, frame_interval=fi, num_clips=T, test_mode=True), 'loop'
    span = n - fi + 1
    if n > fi - 1:
        avg = span / float(T)
        offs = [int(avg * t + avg / 2.0) for t in range(T)]
    else:
        offs = [0] * T
    return [o % n for o in offs]


def tsn_val(n: int, S: int) -> list[int]:
    # Uni-AdaFocus _get_val_indices, converted from 1-based file numbers to 0-based frames
    return [int(np.floor((0.5 + t) / S * n)) for t in range(S)]


def stam_resampled(n: int, T: int) -> list[int]:
    # STAM: resample to a rate giving T frames over the video, keep the first T: floor(t * step)
    return [math.floor(t * n / T) for t in range(T)]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("T", [1, 4, 8, 16])
@pytest.mark.parametrize("fi", [1, 2, 4])
def test_clip_matches_mmaction_test_mode(n, T, fi):
    assert clip_indices(n, T, frame_interval=fi).tolist() == [mmaction_test_clip(n, T, fi)]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("S", [1, 4, 8, 12, 16])
def test_segments_match_tsn_val(n, S):
    assert segment_indices(n, S).tolist() == [tsn_val(n, S)]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("T", [1, 8, 16])
def test_uniform_matches_stam_resampling(n, T):
    assert uniform_indices(n, T).tolist() == [stam_resampled(n, T)]


def test_kinetics_style_examples():
    # 300 frames, 8 samples: TSN centres of 37.5-frame segments
    assert segment_indices(300, 8)[0].tolist() == [18, 56, 93, 131, 168, 206, 243, 281]
    # Video-FocalNet K400: frame_interval 4 shortens the span to 297 frames
    assert clip_indices(300, 8, frame_interval=4)[0].tolist() == [18, 55, 92, 129, 167, 204, 241, 278]
    assert uniform_indices(300, 8)[0].tolist() == [0, 37, 75, 112, 150, 187, 225, 262]


@pytest.mark.parametrize("fn", [clip_indices, uniform_indices, segment_indices])
@pytest.mark.parametrize("n", LENGTHS)
def test_multi_clip_in_range_and_first_clip_is_single_view(fn, n):
    one = fn(n, 8)
    many = fn(n, 8, num_clips=4)
    assert many.shape == (4, 8)
    assert many.min() >= 0 and many.max() < n
    if fn is uniform_indices:
        assert (many[0] == one[0]).all()  # clip 0 starts at frame 0, as single view does
    # clips are spread: for long videos every clip differs
    if n >= 64:
        assert len({tuple(r) for r in many.tolist()}) == 4


def test_multi_clip_offsets_inside_each_interval():
    idx = segment_indices(400, 4, num_clips=2)
    # intervals of 100 frames; clip 0 at 1/4, clip 1 at 3/4 of each
    assert idx.tolist() == [[25, 125, 225, 325], [75, 175, 275, 375]]
    idx = clip_indices(400, 4, num_clips=2)
    assert idx.tolist() == [[25, 125, 225, 325], [75, 175, 275, 375]]


def test_short_videos_repeat_frames():
    assert segment_indices(3, 8)[0].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert clip_indices(3, 8)[0].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert uniform_indices(1, 4)[0].tolist() == [0, 0, 0, 0]


def test_dispatch_and_errors():
    assert sample_indices("segments", 100, 4).tolist() == segment_indices(100, 4).tolist()
    with pytest.raises(VideployError, match="sampling"):
        sample_indices("random", 100, 4)
    with pytest.raises(VideployError, match="0 frames"):
        segment_indices(0, 4)
