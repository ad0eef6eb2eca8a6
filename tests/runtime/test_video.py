"""Video decoding and preprocessing on real files: exact frame selection, pixels, and damaged input."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.runtime.damaged import faststart, truncate
from videploy.bundle.manifest import Preprocessing
from videploy.errors import VideployError
from videploy.runtime import video as video_mod
from videploy.runtime.samples import (
    decode_index,
    sample_video_path,
    synthetic_frames,
    write_synthetic_video,
)
from videploy.runtime.sampling import sample_indices
from videploy.runtime.video import decode_views, load_video

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def pre(sampling="segments", T=8, crop=(32, 32), short=36, **kw) -> Preprocessing:
    return Preprocessing(num_frames=T, sampling=sampling, crop_size=crop, resize_short=short, mean=MEAN, std=STD, **kw)


def read_all(path: Path) -> np.ndarray:
    """Every frame of a file, RGB, decoded independently of the runtime."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[..., ::-1])
    cap.release()
    return np.stack(frames)


@pytest.fixture(scope="module")
def index_mp4(tmp_path_factory) -> Path:
    return write_synthetic_video(tmp_path_factory.mktemp("v") / "index.mp4", num_frames=300, size=(48, 64), fps=25)


def frames_seen(v) -> list[int]:
    return [decode_index(f) for f in v.display_frames]


# --- exact frame selection -------------------------------------------------------------------------
@pytest.mark.parametrize("sampling", ["clip", "uniform", "segments"])
@pytest.mark.parametrize("seek", [None, True, False])
def test_decodes_exactly_the_sampled_frames(index_mp4, sampling, seek):
    p = pre(sampling, frame_interval=4 if sampling == "clip" else 1)
    v = load_video(index_mp4, p, seek=seek)
    expected = sample_indices(sampling, 300, 8, frame_interval=p.frame_interval)[0].tolist()
    assert v.frame_indices[0].tolist() == expected
    assert frames_seen(v) == expected  # the pixels really come from those frames
    assert v.num_frames == 300 and v.notes == ()
    assert v.views.shape == (1, 8, 3, 32, 32) and v.views.dtype == np.float32


def test_multi_clip_views_are_clip_major(index_mp4):
    p = pre("clip")
    v = load_video(index_mp4, p, num_clips=3, num_crops=3)
    assert v.views.shape == (9, 8, 3, 32, 32)
    idx = sample_indices("clip", 300, 8, num_clips=3)
    assert v.frame_indices.tolist() == idx.tolist()
    # view c*3+k is clip c: its frames (flat colours survive any crop) are clip c's indices
    mean, std = np.array(MEAN), np.array(STD)
    for c in range(3):
        for k in range(3):
            rgb = (v.views[c * 3 + k].transpose(0, 2, 3, 1) * std + mean) * 255.0
            assert [decode_index(f) for f in rgb] == idx[c].tolist()


def test_file_and_array_inputs_agree():
    path = sample_video_path()
    frames = read_all(path)
    p = pre("segments", crop=(48, 48), short=56)
    a = load_video(path, p, num_clips=2, num_crops=3)
    b = load_video(frames, p, num_clips=2, num_crops=3)
    assert a.num_frames == b.num_frames == frames.shape[0]
    assert a.frame_indices.tolist() == b.frame_indices.tolist()
    np.testing.assert_array_equal(a.views, b.views)
    assert a.size == (272, 640) and a.fps == pytest.approx(25.0)


# --- pixels: resize, crop, normalise, computed independently --------------------------------------
def reference_view(frames: np.ndarray, idx: list[int], short: int, crop: int, torchvision_style: bool) -> np.ndarray:
    out = []
    for i in idx:
        f = frames[i]
        h, w = f.shape[:2]
        if torchvision_style:  # torchvision Resize(int): long side truncated; CenterCrop rounds
            nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
            f = cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA if nh * nw < h * w else cv2.INTER_LINEAR)
            top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
        else:  # mmcv: long side rounded, crop offsets floored, bilinear
            nh, nw = (short, int(w * short / h + 0.5)) if h <= w else (int(h * short / w + 0.5), short)
            f = cv2.resize(f, (nw, nh), interpolation=cv2.INTER_LINEAR)
            top, left = (nh - crop) // 2, (nw - crop) // 2
        c = f[top : top + crop, left : left + crop].astype(np.float64) / 255.0
        out.append(((c - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1))
    return np.stack(out)


@pytest.mark.parametrize("sampling", ["clip", "segments", "uniform"])
def test_pixels_match_independent_pipeline(sampling):
    path = sample_video_path()
    frames = read_all(path)
    p = pre(sampling, crop=(56, 56), short=64)
    v = load_video(path, p)
    ref = reference_view(frames, v.frame_indices[0].tolist(), 64, 56, torchvision_style=sampling != "clip")
    np.testing.assert_allclose(v.views[0], ref, rtol=0, atol=1e-5)


def test_three_crop_positions_landscape_and_portrait():
    rng = np.random.default_rng(0)
    for h, w in ((40, 100), (100, 40)):
        frames = rng.integers(0, 256, size=(4, h, w, 3), dtype=np.uint8)
        p = Preprocessing(num_frames=4, sampling="segments", crop_size=(20, 20), resize_short=30, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0)
        v = load_video(frames, p, num_crops=3)
        # three-crop resizes the short side to the crop size (not resize_short), then first / last / middle
        nh, nw = (20, 50) if h < w else (50, 20)
        small = [cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in frames]
        step = 15
        starts = [0, 2 * step, step]
        for k, s in enumerate(starts):
            ref = np.stack([(f[:, s : s + 20] if h < w else f[s : s + 20, :]) for f in small]).transpose(0, 3, 1, 2)
            np.testing.assert_array_equal(v.views[k], ref.astype(np.float32))


def test_options_bgr_squish_nonsquare():
    frames = synthetic_frames(10, (40, 60), "moving")
    base = dict(num_frames=4, sampling="uniform", mean=(0, 0, 0), std=(1, 1, 1), scale=1.0)
    rgb = load_video(frames, Preprocessing(crop_size=(24, 24), resize_short=30, **base)).views
    bgr = load_video(frames, Preprocessing(crop_size=(24, 24), resize_short=30, channel_order="BGR", **base)).views
    np.testing.assert_array_equal(rgb[:, :, ::-1], bgr)
    squish = load_video(frames, Preprocessing(crop_size=(24, 24), resize_short=0, **base))
    ref = cv2.resize(frames[0], (24, 24), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    np.testing.assert_array_equal(squish.views[0, 0], ref.astype(np.float32))
    wide = load_video(frames, Preprocessing(crop_size=(20, 36), resize_short=24, **base))
    assert wide.views.shape == (1, 4, 3, 20, 36)
    # a resize smaller than the crop still covers it
    small = load_video(frames, Preprocessing(crop_size=(32, 32), resize_short=16, **base))
    assert small.views.shape == (1, 4, 3, 32, 32)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("scale, mean, std", [(1 / 255, MEAN, STD), (1.0, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))])
def test_normalise_is_the_float32_arithmetic_bit_for_bit(order, scale, mean, std):
    """The table lookup gives exactly what (v * scale - mean) / std in float32 gives, per channel, in either order."""
    p = Preprocessing(num_frames=4, sampling="segments", crop_size=(8, 8), resize_short=8, mean=mean, std=std, scale=scale, channel_order=order)
    crops = np.random.default_rng(0).integers(0, 256, size=(5, 3, 7, 9, 3), dtype=np.uint8)
    crops[0, 0, 0, :3] = [[0, 0, 0], [255, 255, 255], [1, 128, 254]]
    rgb_mean, rgb_std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    x = crops if order == "RGB" else crops[..., ::-1]
    m, s = (rgb_mean, rgb_std) if order == "RGB" else (rgb_mean[::-1], rgb_std[::-1])
    ref = np.moveaxis((x.astype(np.float32) * np.float32(scale) - m) / s, -1, -3)
    t = video_mod._FrameTransform(p, 1)
    assert t.normalise(crops).dtype == np.float32
    assert t.normalise(crops).tobytes() == np.ascontiguousarray(ref).tobytes()
    strided = crops[:, :, 1:6, 2:8]  # a view, not contiguous
    np.testing.assert_array_equal(t.normalise(strided), ref[:, :, :, 1:6, 2:8])
    assert t.normalise(crops[:0]).shape == (0, 3, 3, 7, 9)


def test_decode_views_defaults_to_one_view(index_mp4):
    assert decode_views(index_mp4, pre()).shape == (1, 8, 3, 32, 32)
    assert decode_views(index_mp4, pre(), num_clips=2, num_crops=3).shape == (6, 8, 3, 32, 32)


# --- frame counts that lie --------------------------------------------------------------------------
def _avi_claiming(src: Path, dst: Path, claimed: int) -> Path:
    data = bytearray(src.read_bytes())
    j = data.find(b"strh")
    struct.pack_into("<I", data, j + 8 + 32, claimed)  # AVISTREAMHEADER.dwLength
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("claimed", [30, 100])
@pytest.mark.parametrize("seek", [True, False])
def test_wrong_container_frame_count_is_recounted(tmp_path, claimed, seek):
    src = write_synthetic_video(tmp_path / "real.avi", num_frames=60, size=(32, 48))
    liar = _avi_claiming(src, tmp_path / "liar.avi", claimed)
    assert cv2.VideoCapture(str(liar)).get(cv2.CAP_PROP_FRAME_COUNT) == claimed  # the premise
    v = load_video(liar, pre(), seek=seek)
    assert v.num_frames == 60
    expected = sample_indices("segments", 60, 8)[0].tolist()
    assert v.frame_indices[0].tolist() == expected and frames_seen(v) == expected
    note = next(n for n in v.notes if f"claims {claimed} frames but" in n)
    # fewer frames than claimed points at damage; more, at a container that only estimates its count
    assert ("only 60 decode (damaged" in note) if claimed > 60 else ("60 decode (the container's count is an estimate" in note)


def test_truncated_faststart_mp4_uses_the_frames_that_decode(tmp_path):
    src = write_synthetic_video(tmp_path / "a.mp4", num_frames=120, size=(32, 48))
    cut = truncate(faststart(src, tmp_path / "fs.mp4"), tmp_path / "cut.mp4", 0.5)
    assert cv2.VideoCapture(str(cut)).get(cv2.CAP_PROP_FRAME_COUNT) == 120  # it still claims them all
    decodable = read_all(cut).shape[0]
    assert 0 < decodable < 120
    v = load_video(cut, pre())
    assert v.num_frames == decodable
    expected = sample_indices("segments", decodable, 8)[0].tolist()
    assert frames_seen(v) == expected
    assert any("claims 120 frames" in n for n in v.notes)


def test_truncated_real_mp4_faststart(tmp_path):
    cut = truncate(faststart(sample_video_path(), tmp_path / "fs.mp4"), tmp_path / "bikes_cut.mp4", 0.4)
    v = load_video(cut, pre())
    assert 0 < v.num_frames < 250 and v.notes


# --- damaged and wrong input --------------------------------------------------------------------
def test_short_videos_repeat_and_say_so(tmp_path):
    one = load_video(write_synthetic_video(tmp_path / "one.mp4", 1, (32, 32)), pre())
    assert one.frame_indices.tolist() == [[0] * 8] and one.num_frames == 1
    assert "fewer than the 8" in one.notes[0] and "repeated" in one.notes[0]
    five = load_video(write_synthetic_video(tmp_path / "five.avi", 5, (32, 32)), pre("clip"))
    assert frames_seen(five) == sample_indices("clip", 5, 8)[0].tolist()
    assert "wrap" in five.notes[0]


def test_tiny_8x8_video_is_upscaled(tmp_path):
    v = load_video(write_synthetic_video(tmp_path / "tiny.mp4", 20, (8, 8)), pre())
    assert v.views.shape == (1, 8, 3, 32, 32) and v.size == (8, 8)
    assert np.isfinite(v.views).all()


def test_large_frames_are_resized_on_decode(tmp_path):
    path = write_synthetic_video(tmp_path / "big.avi", 3, (1080, 1920), pattern="index")
    v = load_video(path, pre(T=3))
    assert v.size == (1080, 1920) and v.display_frames.shape == (3, 32, 32, 3)
    assert frames_seen(v) == [0, 1, 2]


def test_resolution_limit(tmp_path, monkeypatch):
    path = write_synthetic_video(tmp_path / "a.mp4", 10, (48, 64))
    monkeypatch.setattr(video_mod, "MAX_FRAME_PIXELS", 48 * 64 - 1)
    with pytest.raises(VideployError, match="64x48 frames, more than the limit"):
        load_video(path, pre())
    with pytest.raises(VideployError, match="exceed the limit"):
        load_video(np.zeros((2, 48, 64, 3), np.uint8), pre())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "does not exist"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "empty.mp4", b""), "empty \\(0 bytes\\)"),
        (lambda d: _write(d / "notes.mp4", b"not a video\n" * 50), "not a video OpenCV can open"),
        (lambda d: _write(d / "noise.mp4", np.random.default_rng(1).bytes(50_000)), "not a video OpenCV can open"),
        (lambda d: truncate(sample_video_path(), d / "cut.mp4", 0.5), "truncated"),
        (lambda d: truncate(write_synthetic_video(d / "s.avi", 30, (32, 32)), d / "head.avi", 0.02), "not a video|no frame"),
    ],
    ids=["missing", "directory", "zero-bytes", "text", "random-bytes", "truncated-mp4", "truncated-before-first-frame"],
)
def test_bad_files_raise_clear_errors(tmp_path, make, message):
    sub = tmp_path / "in"
    sub.mkdir()
    path = make(sub)
    with pytest.raises(VideployError, match=message) as info:
        load_video(path, pre())
    assert str(path) in str(info.value) or "0 bytes" in str(info.value)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((8, 32, 32), np.uint8), "shape \\(T, H, W, 3\\)"),
        (np.zeros((8, 32, 32, 4), np.uint8), "shape \\(T, H, W, 3\\)"),
        (np.zeros((8, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((0, 32, 32, 3), np.uint8), "empty"),
    ],
)
def test_bad_arrays_raise(array, message):
    with pytest.raises(VideployError, match=message):
        load_video(array, pre())


def test_bad_source_type_and_view_counts(index_mp4):
    with pytest.raises(VideployError, match="file path or a numpy array"):
        load_video([1, 2, 3], pre())
    with pytest.raises(VideployError, match="num_crops"):
        load_video(index_mp4, pre(), num_crops=2)
    with pytest.raises(VideployError, match="num_clips"):
        load_video(index_mp4, pre(), num_clips=0)


# --- found by the damaged-corpus QA run ------------------------------------------------------------
def test_decoding_keeps_only_the_crops(tmp_path):
    """Memory: a kept frame is its crop, not the resized frame (a tall 8x1200 clip resizes to 64x9600)."""
    import tracemalloc

    frames = synthetic_frames(16, (1200, 8), "moving")
    path = tmp_path / "tall.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (8, 1200))
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    p = pre("segments", T=8, crop=(32, 32), short=64)
    tracemalloc.start()
    try:
        v = load_video(path, p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_resized = 64 * 9600 * 3
    # T=8 resized frames would be ~15 MB; now: one resized frame at a time plus 8 crops
    assert peak < 3 * one_resized, peak
    ref = reference_view(read_all(path), v.frame_indices[0].tolist(), 64, 32, torchvision_style=True)
    np.testing.assert_allclose(v.views[0], ref, rtol=0, atol=1e-5)


def test_extreme_aspect_ratio_is_refused_not_resized(tmp_path, monkeypatch):
    # 1x640 frames with a 36-pixel short side would resize to 36x23040; a 1x4000 video at the
    # AdaFocusV3 size (256) to 256x1024000 (786 MB per frame) -- refused from the header, before decoding
    monkeypatch.setattr(video_mod, "MAX_FRAME_PIXELS", 36 * 23040 - 1)
    path = tmp_path / "thin.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (1, 640))
    for f in synthetic_frames(3, (640, 1), "moving"):
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    decoded = []
    monkeypatch.setattr(video_mod._Reader, "_keep", lambda self, *a: decoded.append(1))
    with pytest.raises(VideployError, match=r"1x640 frames, an aspect ratio of 640:1: resizing them for this model would make 36x23040"):
        load_video(path, pre())
    assert decoded == []
    with pytest.raises(VideployError, match="the frame array has 1x640 frames"):
        load_video(np.zeros((2, 640, 1, 3), np.uint8), pre())
    monkeypatch.undo()
    assert load_video(path, pre()).views.shape == (1, 8, 3, 32, 32)  # under the limit it is predicted


def test_percent_in_a_file_name_is_not_an_image_sequence_pattern(tmp_path, monkeypatch):
    # FFmpeg (and OpenCV's image reader) would expand "clip_%03d.png" to clip_000.png, clip_001.png, ...
    # -- other files -- and predict on those
    red, blue = np.zeros((24, 32, 3), np.uint8), np.zeros((24, 32, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    cv2.imwrite(str(tmp_path / "clip_%03d.png"), red[..., ::-1])
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"clip_{i:03d}.png"), blue[..., ::-1])
    links = tmp_path / "tmp"
    links.mkdir()
    monkeypatch.setattr(video_mod.tempfile, "tempdir", str(links))
    v = load_video(tmp_path / "clip_%03d.png", pre(T=2, short=32))
    assert v.num_frames == 1 and (v.display_frames[..., 0] > 200).all() and (v.display_frames[..., 2] < 50).all()  # red, not blue
    video = write_synthetic_video(tmp_path / "100%_%d.avi", 30, (32, 48))
    assert frames_seen(load_video(video, pre())) == sample_indices("segments", 30, 8)[0].tolist()
    assert list(links.iterdir()) == []  # the plain-named link is removed again


def test_file_name_that_is_not_utf8(tmp_path):
    # bytes that are not UTF-8 come to Python as surrogates, and cv2.VideoCapture segfaults on them
    import os

    src = write_synthetic_video(tmp_path / "src.avi", 30, (32, 48))
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/clip\xff.avi")
    try:
        Path(name).write_bytes(src.read_bytes())
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    v = load_video(name, pre())
    assert v.source == name and frames_seen(v) == sample_indices("segments", 30, 8)[0].tolist()


def test_relative_name_with_a_colon_is_a_file_not_a_protocol(tmp_path, monkeypatch):
    # FFmpeg reads a relative "file:x.avi" as protocol "file"; OpenCV then falls back to another reader
    write_synthetic_video(tmp_path / "file:clip.avi", 30, (32, 48))
    monkeypatch.chdir(tmp_path)
    rel = load_video("file:clip.avi", pre())
    ab = load_video(tmp_path / "file:clip.avi", pre())
    assert rel.source == "file:clip.avi" and frames_seen(rel) == sample_indices("segments", 30, 8)[0].tolist()
    np.testing.assert_array_equal(rel.views, ab.views)


def test_stdin_absurd_names_and_view_counts_raise(index_mp4, tmp_path):
    with pytest.raises(VideployError, match="standard input"):
        load_video("-", pre())
    with pytest.raises(VideployError, match="cannot access video .*File name too long"):
        load_video(tmp_path / ("a" * 300 + ".mp4"), pre())  # stat() raises instead of saying "missing"
    with pytest.raises(VideployError, match="num_clips must be between 1 and 64, got 100000"):
        load_video(index_mp4, pre(), num_clips=100000)


@pytest.mark.parametrize("failure, message", [(cv2.error("(-215:Assertion failed) boom"), "OpenCV failed while decoding"), (MemoryError(), "ran out of memory")])
def test_decoder_failures_become_errors_for_that_video(index_mp4, monkeypatch, failure, message):
    def keep(self, *args):
        raise failure

    monkeypatch.setattr(video_mod._Reader, "_keep", keep)
    with pytest.raises(VideployError, match=message) as info:
        load_video(index_mp4, pre())
    assert str(index_mp4) in str(info.value)


def test_unknown_header_properties_are_zero():
    assert [video_mod._prop_int(x) for x in (None, float("nan"), -1.0, 0.0, 64.0)] == [0, 0, 0, 0, 64]
