"""Training data: the symmetry augmentation moves pixels and labels together."""

from __future__ import annotations

import numpy as np
import torch

from videploy.datasets import actions
from videploy.training.data import symmetric_augment


def test_symmetric_augment_maps_each_video_and_its_label_the_same_way():
    size, n = 16, 96
    frames = np.zeros((n, 2, size, size, 3), dtype=np.uint8)
    frames[:, :, 10, 3] = 255  # one marker at (x=3, y=10): each of the 8 symmetries puts it elsewhere
    labels = np.arange(n) % len(actions.CLASSES)
    out, new = symmetric_augment(frames, labels, torch.Generator().manual_seed(0))
    assert out.shape == frames.shape and out.dtype == np.uint8
    seen = set()
    for i in range(n):
        ys, xs = np.nonzero(out[i, 0, :, :, 0])
        (y,), (x,) = ys, xs
        assert np.array_equal(out[i, 0], out[i, 1])  # every frame of a video gets the same transform
        matches = []
        for k, (transpose, flip_y, flip_x) in enumerate(actions.SYMMETRIES):
            px, py = (10, 3) if transpose else (3, 10)
            py = size - 1 - py if flip_y else py
            px = size - 1 - px if flip_x else px
            if (px, py) == (x, y):
                matches.append(k)
        (k,) = matches
        seen.add(k)
        assert new[i] == actions.symmetry_labels(*actions.SYMMETRIES[k])[labels[i]]
    assert seen == set(range(8))  # all eight are drawn
    assert np.array_equal(frames[:, :, 10, 3], np.full((n, 2, 3), 255))  # the input is untouched
