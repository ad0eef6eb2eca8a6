"""Verification inputs: natural batches made from one real view."""

from __future__ import annotations

import numpy as np

from videploy.export.verify import batch_of


def test_batch_of_makes_distinct_natural_samples():
    view = np.random.default_rng(1).random((1, 4, 3, 5, 6), dtype=np.float32)
    b = batch_of(view, 6)
    assert b.shape == (6, 4, 3, 5, 6) and b.flags.c_contiguous
    np.testing.assert_array_equal(b[0], view[0])
    np.testing.assert_array_equal(b[1], view[0][..., ::-1])
    np.testing.assert_array_equal(b[2], view[0][::-1])
    np.testing.assert_array_equal(b[5], np.roll(view[0][..., ::-1], 1, axis=0))
    assert len({x.tobytes() for x in b}) == 6
