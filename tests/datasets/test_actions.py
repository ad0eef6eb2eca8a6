"""The generated action videos: deterministic, real files, labels and actor boxes that are right."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from videploy.bundle.manifest import Preprocessing
from videploy.datasets import actions
from videploy.errors import VideployError
from videploy.runtime.video import load_video

SMALL = actions.ActionVideoSpec(size=64, num_frames=16, actor_radius=(5.0, 6.0), num_distractors=(2, 3))


def test_render_is_deterministic_by_seed():
    a = actions.render_clip(3, seed=7, spec=SMALL)
    b = actions.render_clip(3, seed=7, spec=SMALL)
    c = actions.render_clip(3, seed=8, spec=SMALL)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (16, 64, 64, 3) and a.frames.dtype == np.uint8


def _centre(boxes):
    return (boxes[:, :2] + boxes[:, 2:]) / 2


@pytest.mark.parametrize("name, axis, sign", [("move_left", 0, -1), ("move_right", 0, 1), ("move_up", 1, -1), ("move_down", 1, 1)])
def test_moving_actor_moves_only_inside_its_window(name, axis, sign):
    clip = actions.render_clip(actions.CLASSES.index(name), seed=1, spec=SMALL)
    s0, s1 = clip.window
    c = _centre(clip.boxes)
    assert 0 < s0 < s1 <= 16
    assert sign * (c[s1 - 1, axis] - c[s0, axis]) > 5  # it travelled in the class's direction
    assert np.allclose(c[:s0 + 1], c[0]) and np.allclose(c[s1 - 1 :], c[s1 - 1])  # still outside the window


@pytest.mark.parametrize("name, grows", [("grow", True), ("shrink", False)])
def test_growing_and_shrinking_change_the_box(name, grows):
    clip = actions.render_clip(actions.CLASSES.index(name), seed=2, spec=SMALL)
    area = (clip.boxes[:, 2] - clip.boxes[:, 0]) * (clip.boxes[:, 3] - clip.boxes[:, 1])
    assert (area[-1] > 1.3 * area[0]) if grows else (area[-1] < 0.8 * area[0])


def test_still_actor_does_not_move():
    clip = actions.render_clip(0, seed=3, spec=SMALL)
    assert np.allclose(clip.boxes, clip.boxes[0])


def test_generate_writes_videos_csv_boxes_and_labels(tmp_path):
    paths = actions.generate(tmp_path, {"train": 12, "val": 3}, seed=0, spec=SMALL)
    assert set(paths) == {"train", "val"}
    names = (tmp_path / "labels.txt").read_text().splitlines()
    assert tuple(names) == actions.CLASSES
    rows = list(csv.reader(open(paths["train"])))
    assert rows[0] == ["path", "label"] and len(rows) == 13
    assert sorted(int(r[1]) for r in rows[1:]) == sorted(list(range(10)) + [0, 1])  # balanced
    meta = json.load(open(tmp_path / "train_boxes.json"))["videos"]
    assert set(meta) == {r[0] for r in rows[1:]}
    for rel, label in rows[1:]:
        assert rel.startswith("train/") and actions.CLASSES[int(label)] in rel
        assert len(meta[rel]["boxes"]) == 16 and meta[rel]["label"] == int(label)
    # same seed, same bytes of labels and boxes
    again = actions.generate(tmp_path / "again", {"train": 12}, seed=0, spec=SMALL)
    assert open(again["train"]).read() == open(paths["train"]).read()
    assert json.load(open(tmp_path / "again" / "train_boxes.json"))["videos"] == meta


def test_videos_read_back_and_the_actor_is_inside_its_box(tmp_path):
    actions.generate(tmp_path, {"test": 4}, seed=5, spec=SMALL)
    rows = actions.read_split(tmp_path / "test.csv")
    meta = actions.read_boxes(tmp_path / "test_boxes.json")
    pre = Preprocessing(num_frames=16, sampling="segments", crop_size=(64, 64), resize_short=64, mean=(0, 0, 0), std=(1, 1, 1))
    for path, label in rows:
        video = load_video(path, pre)
        assert video.num_frames == 16 and video.display_frames.shape == (16, 64, 64, 3)
        info = meta[path.relative_to(tmp_path).as_posix()]
        hsv = cv2.cvtColor(video.display_frames[0], cv2.COLOR_RGB2HSV)
        x1, y1, x2, y2 = np.asarray(info["boxes"][0]).round().astype(int)
        inside = hsv[max(y1, 0) : y2 + 1, max(x1, 0) : x2 + 1, 1]
        # the actor is the saturated thing; the clutter is muted
        assert inside.max() > 200, path


def test_read_split_errors_name_the_file(tmp_path):
    with pytest.raises(VideployError, match="no CSV"):
        actions.read_split(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.mp4,x\n")
    with pytest.raises(VideployError, match="bad.csv:2"):
        actions.read_split(bad)


def test_boxes_in_view_follow_resize_and_centre_crop():
    b = actions.boxes_in_view(np.array([[10.0, 20.0, 30.0, 40.0]]), (144, 144), 146, 128)
    s = 146 / 144
    assert np.allclose(b, np.array([[10, 20, 30, 40]]) * s - 9)


def _apply(points, size, transpose, flip_y, flip_x):
    # the frame transform of videploy.training.data.symmetric_augment, on (x, y) pixel points
    p = np.asarray(points, dtype=np.float64)[..., [1, 0]] if transpose else np.asarray(points, dtype=np.float64)
    p = p.copy()
    if flip_y:
        p[..., 1] = size - p[..., 1]
    if flip_x:
        p[..., 0] = size - p[..., 0]
    return p


def _turn(tips, centres):
    # signed angle change of the tip around the centre in image coordinates (y down): > 0 is clockwise on screen
    a = np.arctan2(tips[:, 1] - centres[:, 1], tips[:, 0] - centres[:, 0])
    return float(np.angle(np.exp(1j * (a[1] - a[0]))))


@pytest.mark.parametrize("symmetry", actions.SYMMETRIES)
def test_symmetry_labels_follow_the_geometry(symmetry):
    """A transformed clip of class A looks like class table[A]: moves go the mapped way, turns the mapped way."""
    table = actions.symmetry_labels(*symmetry)
    assert sorted(table) == list(range(len(actions.CLASSES)))  # a permutation
    size = SMALL.size
    for name, axis, sign in [("move_left", 0, -1), ("move_right", 0, 1), ("move_up", 1, -1), ("move_down", 1, 1)]:
        clip = actions.render_clip(actions.CLASSES.index(name), seed=1, spec=SMALL)
        s0, s1 = clip.window
        c = _apply(_centre(clip.boxes[[s0, s1 - 1]]), size, *symmetry)
        moved = c[1] - c[0]
        new = actions.CLASSES[table[actions.CLASSES.index(name)]]
        want = {"move_left": (0, -1), "move_right": (0, 1), "move_up": (1, -1), "move_down": (1, 1)}[new]
        assert want[1] * moved[want[0]] > 3 and abs(moved[1 - want[0]]) < 1e-6, (name, new, moved)
    for name in ("rotate_clockwise", "rotate_counterclockwise"):
        label = actions.CLASSES.index(name)
        start, window = (30.0, 30.0, 8.0, 0.4), (2, 10)
        poses = [actions._pose(name, t, window, start, 2.0) for t in (3, 4)]
        tips = _apply(np.array([actions._triangle(*p)[0] for p in poses]), size, *symmetry)
        centres = _apply(np.array([p[:2] for p in poses]), size, *symmetry)
        turned = _turn(tips, centres)
        assert (turned > 0) == (actions.CLASSES[table[label]] == "rotate_clockwise"), (name, symmetry, turned)
    for name in ("still", "grow", "shrink", "blink"):
        assert table[actions.CLASSES.index(name)] == actions.CLASSES.index(name)
