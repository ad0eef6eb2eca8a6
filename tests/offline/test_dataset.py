"""Listing the videos of a directory, glob or CSV, and the resume filter (no Ray needed)."""

from __future__ import annotations

import os

import pytest

from videploy.errors import VideployError
from videploy.offline.dataset import VideoItem, list_videos, pending


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "deep").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("x.mp4", "a/y.AVI", "a/deep/z.mkv", "a/notes.txt", ".hidden/h.mp4", "a/.partial.mp4"):
        (tmp_path / name).write_bytes(b"v")
    return tmp_path


def test_directory_is_searched_recursively_for_video_suffixes(tree):
    paths = [it.path for it in list_videos(tree)]
    # hidden files and directories and non-video suffixes are left out; the order is stable
    assert paths == [str(tree / "x.mp4"), str(tree / "a" / "y.AVI"), str(tree / "a" / "deep" / "z.mkv")]
    assert all(os.path.isabs(p) for p in paths)  # the resume key does not depend on how INPUT was spelled


def test_relative_input_gives_the_same_keys(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert list_videos("a") == list_videos(tree / "a")


def test_glob_matches_files_of_any_suffix(tree):
    got = {it.path for it in list_videos(str(tree / "**" / "*.*"))}
    assert str(tree / "a" / "notes.txt") in got and str(tree / "a" / "deep" / "z.mkv") in got
    assert {it.path for it in list_videos(str(tree / "*.mp4"))} == {str(tree / "x.mp4")}


def test_csv_with_header_labels_relative_paths_and_duplicates(tree):
    csv = tree / "a" / "list.csv"
    csv.write_text("path,label\ny.AVI,walking\n../x.mp4,\n\n/abs/v.mp4,running\ny.AVI,other\n")
    items = list_videos(csv)
    assert items == [
        VideoItem(str(tree / "a" / "y.AVI"), "walking"),  # relative to the CSV's directory
        VideoItem(str(tree / "x.mp4"), None),
        VideoItem("/abs/v.mp4", "running"),  # listed even if missing: its row will carry the error
    ]


def test_csv_without_header(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("v1.mp4,3\nv2.mp4\n")
    assert list_videos(csv) == [VideoItem(str(tmp_path / "v1.mp4"), "3"), VideoItem(str(tmp_path / "v2.mp4"), None)]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nothing", "does not exist"),
    (lambda d: d, "no videos found"),
    (lambda d: str(d / "*.mp4"), "no videos found"),
])
def test_nothing_to_predict_is_an_error(tmp_path, make, message):
    with pytest.raises(VideployError, match=message):
        list_videos(make(tmp_path))


def test_csv_row_without_path(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("path,label\n,3\n")
    with pytest.raises(VideployError, match="has no path"):
        list_videos(csv)


def test_pending_skips_done_paths():
    items = [VideoItem("/a"), VideoItem("/b"), VideoItem("/c")]
    assert pending(items, {"/b"}) == [VideoItem("/a"), VideoItem("/c")]
