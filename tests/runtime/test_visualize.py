"""write_visualization refuses paths OpenCV cannot write before touching OpenCV."""

from __future__ import annotations

import pytest

from videploy.errors import VideployError
from videploy.runtime.visualize import check_output_path, write_visualization


@pytest.mark.parametrize(
    "name, message",
    [("focus\udcff.png", "not valid UTF-8"), ("focus.gif", ".png, .jpg, .mp4 or .avi"), ("a_file/focus.png", "is a file, not a directory")],
)
def test_unwritable_paths_are_refused_for_library_callers(tmp_path, name, message):
    (tmp_path / "a_file").write_text("x")
    # the prediction is never looked at: the path is checked first (a non-UTF-8 path crashes OpenCV)
    with pytest.raises(VideployError, match=message):
        write_visualization(object(), tmp_path / name)


def test_good_path_passes(tmp_path):
    assert check_output_path(tmp_path / "focus.mp4") == tmp_path / "focus.mp4"
