"""Request parsing and response tensors (no server needed)."""

from __future__ import annotations

import numpy as np
import pytest

from videploy.errors import VideployError
from videploy.serve import protocol

MB = 2**20


def test_video_bytes_are_taken_as_they_are():
    parsed = protocol.parse_request({"video": np.array([b"\x00\x01abc"], dtype=object)}, MB)
    assert parsed == protocol.EncodedVideo(b"\x00\x01abc")


def test_frames_are_checked():
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    assert protocol.parse_request({"frames": frames}, MB) is frames
    with pytest.raises(VideployError, match=r"uint8 RGB frames of shape \[T, H, W, 3\]"):
        protocol.parse_request({"frames": np.zeros((4, 8, 8, 4), np.uint8)}, MB)
    with pytest.raises(VideployError, match="more than this server's limit of 1 MB"):
        protocol.parse_request({"frames": np.zeros((20, 128, 160, 3), np.uint8)}, MB)


@pytest.mark.parametrize(
    "tensors, message",
    [
        ({}, "exactly one of the inputs 'video'.*'frames'.*neither"),
        ({"video": np.array([b"x"], dtype=object), "frames": np.zeros((1, 2, 2, 3), np.uint8)}, r"exactly one.*\['video', 'frames'\]"),
        ({"video": np.array([b""], dtype=object)}, r"'video' is empty \(0 bytes\)"),
        ({"video": np.array(["a text"], dtype=object)}, "got text; read the file in binary mode"),
        ({"video": np.array([b"a", b"b"], dtype=object)}, r"one video file \(shape \[1\] per request\), got shape \[2\]"),
        ({"video": np.array([b"x" * (MB + 1)], dtype=object)}, r"1\.0 MB, more than this server's limit of 1 MB \(--max-upload-mb\)"),
    ],
)
def test_bad_requests_say_why(tensors, message):
    with pytest.raises(VideployError, match=message):
        protocol.parse_request(tensors, MB)


def test_responses_are_padded_to_top_k_and_match_the_declared_tensors():
    out = protocol.response([(3, 0.75, "walk"), (1, 0.25, "run")], top_k=3, exit_step=2, gflops=1.5)
    decls = {d.name: d for d in protocol.outputs(3)}
    assert set(out) == set(decls)
    for name, arr in out.items():
        assert arr.shape == decls[name].shape, name
    assert out["top_indices"].tolist() == [3, 1, -1] and out["top_labels"].tolist() == [b"walk", b"run", b""]
    np.testing.assert_allclose(out["top_probabilities"], [0.75, 0.25, 0.0])
    assert out["exit_step"].tolist() == [2] and out["error"].tolist() == [b""]
    err = protocol.error_response("not a video", top_k=3)
    assert err["error"].tolist() == [b"not a video"] and err["top_indices"].tolist() == [-1, -1, -1]
